"""Per-image encoding work of the gateway: its direct encoders against pynetdicom's and pydicom's.

Every C-STORE costs the gateway one File Meta Information group (the reception file's start)
and one C-STORE-RSP command set. ``gateway.file_meta`` and ``gateway.answers`` write those bytes
themselves (the tests hold them to the libraries' bytes); this prints, for each, the CPU time
per message of the library's encoder and of the gateway's, measured here in the same run, and
their ratio. Usage:

    .venv/bin/python bench/encoding.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from io import BytesIO

from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta

from gateway.answers import encode_store_response
from gateway.file_meta import encode_reception_file_meta
from radraft.logs import configure_logging

DX = UID("1.2.840.10008.5.1.4.1.1.1.1")
INSTANCE = UID("1.2.826.0.1.3680043.8.498.10453219878212344321098765432112")


def cpu_microseconds(work: Callable[[], object], repeat: int) -> float:
    """Median of five runs of ``repeat`` calls, in CPU microseconds per call."""
    work()
    runs = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            work()
        runs.append((time.process_time() - start) / repeat * 1e6)
    return sorted(runs)[2]


def response() -> C_STORE:
    primitive = C_STORE()
    primitive.MessageID = primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = DX
    primitive.AffectedSOPInstanceUID = INSTANCE
    primitive.Status = 0x0000
    return primitive


def pynetdicom_response() -> None:
    message = C_STORE_RSP()
    message.primitive_to_message(response())
    list(message.encode_msg(1, 131072))


def meta() -> object:
    return create_file_meta(
        sop_class_uid=DX, sop_instance_uid=INSTANCE, transfer_syntax=ExplicitVRLittleEndian
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    repeat = parser.parse_args().repeat
    configure_logging("WARNING")  # the gateway's pydicom settings
    file_meta = meta()
    rows = [
        (
            "C-STORE-RSP command set",
            cpu_microseconds(pynetdicom_response, repeat),
            cpu_microseconds(lambda: encode_store_response(response()), repeat),
        ),
        (
            "reception File Meta Information",
            cpu_microseconds(lambda: write_file_meta_info(BytesIO(), file_meta), repeat),
            cpu_microseconds(lambda: encode_reception_file_meta(file_meta), repeat),
        ),
    ]
    print(f"{'per message':34s} {'library us':>11s} {'gateway us':>11s} {'ratio':>7s}")
    for name, library, ours in rows:
        print(f"{name:34s} {library:11.1f} {ours:11.1f} {library / ours:6.1f}x")
    saved = sum(library - ours for _, library, ours in rows)
    print(f"CPU saved per C-STORE: {saved / 1000:.2f} ms")


if __name__ == "__main__":
    main()
