"""Prior studies on the case page in headless Chromium: the newest prior's signed report open
beside the editor, and a click through to the prior's own case page."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import ReportState, Role
from radraft.settings import Settings
from reporting.users import create_user
from tests.e2e.browser import chromium, log_in, screenshot, wait_for
from tests.processes import radraft_process
from tests.reporting.factories import add_revision, drafted_study
from tests.reporting.web_support import PASSWORD

CURRENT_UID = "1.2.826.0.1.3680043.9.3811.80"
PRIOR_UID = "1.2.826.0.1.3680043.9.3811.81"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_newest_prior_report_is_open_beside_the_editor_in_chromium(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_scope(session_factory) as session:
        attending = create_user(
            session, "alan", role=Role.ATTENDING, password=PASSWORD, full_name="Alan A"
        )
        prior, _ = drafted_study(session, PRIOR_UID)
        current, _ = drafted_study(session, CURRENT_UID)
        for study, study_date in ((prior, "20240310"), (current, "20261201")):
            study.patient_id, study.study_date = "P-80", study_date
        add_revision(session, prior, ReportState.FINAL, author=attending,
                     findings="Left basal atelectasis.",
                     impression="Minor atelectasis.")  # fmt: skip
    base = f"http://127.0.0.1:{settings.http_port}"
    with (
        radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        chromium() as driver,
    ):
        log_in(driver, base, "alan", PASSWORD)
        driver.get(f"{base}/cases/{CURRENT_UID}")
        wait_for(driver, "#case[data-loaded='true']")
        newest = driver.find_element(
            By.CSS_SELECTOR, f"#priors details[data-study-uid='{PRIOR_UID}']"
        )
        assert newest.get_attribute("open") is not None, "the newest prior is open"
        assert "20240310" in newest.find_element(By.TAG_NAME, "summary").text
        assert "Minor atelectasis." in newest.text
        assert "Left basal atelectasis." in newest.text
        screenshot(driver, "case-priors")
        newest.find_element(By.LINK_TEXT, "open").click()
        wait_for(driver, f"#case[data-study-uid='{PRIOR_UID}'][data-loaded='true']")
        assert "No earlier study of this patient" in driver.find_element(By.ID, "priors").text
