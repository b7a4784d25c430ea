"""A case whose images spool retention deleted, in headless Chromium: the viewer says where the
images are instead of showing a broken picture, and the signed report is still there."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import ReportState, Role
from radraft.models import Instance, Series
from radraft.settings import Settings
from radraft.timeutil import utcnow
from reporting.users import create_user
from tests.e2e.browser import attribute, chromium, log_in, screenshot, wait_for
from tests.processes import radraft_process
from tests.reporting.factories import add_revision, drafted_study
from tests.reporting.web_support import PASSWORD

STUDY_UID = "1.2.826.0.1.3680043.9.3811.90"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_viewer_of_a_purged_study_says_the_pacs_has_its_images(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_scope(session_factory) as session:
        attending = create_user(
            session, "alan", role=Role.ATTENDING, password=PASSWORD, full_name="Alan A"
        )
        study, _ = drafted_study(session, STUDY_UID)
        series = Series(study_id=study.id, series_instance_uid=f"{STUDY_UID}.1", modality="DX")
        session.add(series)
        session.flush()
        session.add(Instance(
            study_id=study.id, series_id=series.id, sop_instance_uid=f"{STUDY_UID}.1.1",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
            spool_path="ab/gone.dcm", size_bytes=1000, modality="DX", view_position="PA",
            is_chest=True, purged_at=utcnow(),
        ))  # fmt: skip
        add_revision(session, study, ReportState.FINAL, author=attending,
                     findings="Clear lungs.", impression="Normal chest.")  # fmt: skip
    base = f"http://127.0.0.1:{settings.http_port}"
    with (
        radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        chromium() as driver,
    ):
        log_in(driver, base, "alan", PASSWORD)
        driver.get(f"{base}/cases/{STUDY_UID}")
        wait_for(driver, "#case[data-loaded='true']")
        WebDriverWait(driver, 30).until(expected_conditions.text_to_be_present_in_element(
            (By.ID, "window-readout"), "no longer holds this image"))  # fmt: skip
        readout = driver.find_element(By.ID, "window-readout").text
        assert "spool retention" in readout
        assert "the PACS has it" in readout
        assert driver.find_element(By.ID, "image").get_attribute("src") in (None, "")
        assert attribute(driver, "impression", "value") == "Normal chest.", "the report is intact"
        screenshot(driver, "case-purged")
