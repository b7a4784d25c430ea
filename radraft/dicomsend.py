"""A small C-STORE SCU used by the demo (tests also use dcmtk's storescu as the real peer)."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset
from pynetdicom import AE

from radraft.errors import RadraftError


class SendError(RadraftError):
    """The association failed or an instance was not stored."""


def send_datasets(
    datasets: Iterable[Dataset],
    *,
    host: str,
    port: int,
    called_ae_title: str = "RADRAFT",
    calling_ae_title: str = "RADRAFT_DEMO",
) -> list[int]:
    """Send datasets over one association, each in its own transfer syntax; returns statuses."""
    items = list(datasets)
    ae = AE(ae_title=calling_ae_title)
    for sop_class, syntax in sorted(
        {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in items}
    ):
        ae.add_requested_context(sop_class, syntax)
    association = ae.associate(host, port, ae_title=called_ae_title)
    if not association.is_established:
        raise SendError(f"association with {called_ae_title}@{host}:{port} failed")
    statuses = []
    try:
        for dataset in items:
            response = association.send_c_store(dataset)
            if "Status" not in response:
                raise SendError("no C-STORE response (timeout or abort)")
            statuses.append(int(response.Status))
    finally:
        association.release()
    return statuses
