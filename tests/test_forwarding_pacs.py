"""A PACS that forwards every instance it receives, radraft's own SRs included, back to radraft.

Sites route whole studies from the PACS to radraft; the SRs radraft sends to that PACS then come
back too. They must be stored and never re-open the study, or each SR would start a new draft
whose SR comes back again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import JobStatus, ReportState
from radraft.models import DraftingJob, Instance, ReportRevision, Study
from radraft.settings import DicomDestination, Settings
from reporting.delivery.outputs import load_bundle
from tests.dicom_peers import ReferenceStoreSCP, storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.reporting.factories import add_revision
from tests.support import free_port, require_tool, wait_until

STUDIES = 2
IMAGES_PER_STUDY = 2
DIGITAL_XRAY = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture
def forwarding_pacs(tmp_path: Path, settings: Settings) -> Iterator[ReferenceStoreSCP]:
    """dcmtk's storescp, running storescu on every file it receives to send it on to radraft."""
    forward = (
        f"{require_tool('storescu')} -aet PACS -aec {settings.ae_title} "
        f"127.0.0.1 {settings.dicom_port} #p/#f"
    )
    pacs = ReferenceStoreSCP(
        tmp_path / "pacs", free_port(), ae_title="PACS", options=["+xa", "-xcr", forward]
    )
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_srs_forwarded_back_by_the_pacs_never_start_another_draft(
    settings: Settings,
    session_factory: sessionmaker[Session],
    forwarding_pacs: ReferenceStoreSCP,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(
        update={"sr_destination": DicomDestination("PACS", "127.0.0.1", forwarding_pacs.port)}
    )
    with radraft_process(settings, ["serve"], tmp_path / "serve.log", ready_text="celery@"):
        for seed in range(STUDIES):
            files = synthetic_study_files(700 + seed, tmp_path / f"s{seed}", size=64)
            # The modality sends to the PACS; the PACS forwards to radraft.
            assert storescu(files, port=forwarding_pacs.port, called="PACS").returncode == 0

        def returned_srs() -> int:
            with session_scope(session_factory) as session:
                return int(
                    session.scalar(
                        select(func.count())
                        .select_from(Instance)
                        .where(Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.33")
                    )
                    or 0
                )

        wait_until(lambda: returned_srs() == STUDIES, timeout=120, what="our SRs to come back")
        # Two more stable periods (and the completion poll) for any loop to show itself.
        time.sleep(2 * settings.stable_seconds + 2)

    with session_scope(session_factory) as session:
        jobs = session.scalars(select(DraftingJob)).all()
        drafts = session.scalars(
            select(ReportRevision).where(ReportRevision.drafting_job_id.is_not(None))
        ).all()
        reasons = set(
            session.scalars(
                select(Instance.classification_reason).where(
                    Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.33"
                )
            )
        )
    assert len(jobs) == STUDIES, "one drafting job per study"
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert len(drafts) == STUDIES, "one draft per study"
    assert returned_srs() == STUDIES, "each SR came back once and was kept"
    assert reasons == {"radraft's own report SR, sent back"}
    assert len(list(forwarding_pacs.folder.iterdir())) == STUDIES * (IMAGES_PER_STUDY + 1)

    with session_scope(session_factory) as session:  # the next SR of a study, e.g. its amendment
        study = session.scalars(select(Study).order_by(Study.id)).first()
        assert study is not None
        revision = add_revision(session, study, ReportState.DRAFTED, model=True,
                                findings="Findings.", impression="Impression.")  # fmt: skip
        session.flush()
        bundle = load_bundle(session, revision.id, spool_dir=settings.spool_dir)
    evidence = {reference.sop_class_uid for _, reference in bundle.sources}
    assert evidence == {DIGITAL_XRAY}, "its own SR that came back is not evidence of the next"
    assert len(bundle.sources) == IMAGES_PER_STUDY
