"""A disputed study, and a withdrawn one, in headless Chromium: flagged on the worklist, a
banner on the case page, and the attending's Sign refused with the reason beside the editor."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import Role
from radraft.settings import Settings
from radraft.timeutil import utcnow
from reporting.users import create_user
from tests.e2e.browser import chromium, log_in, screenshot, wait_for
from tests.processes import radraft_process
from tests.reporting.factories import drafted_study
from tests.reporting.web_support import PASSWORD

STUDY_UID = "1.2.826.0.1.3680043.9.3811.77"


CASES = {
    "disputed": ("identity disputed", "identity-banner", "Patient identity disputed"),
    "withdrawn": ("withdrawn (another patient's)", "withdrawn-banner", "Withdrawn"),
}
"""Per mark: the worklist flag, and the case page's banner (id, text)."""


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("mark", sorted(CASES))
def test_a_disputed_or_withdrawn_study_is_flagged_and_not_signed_in_chromium(
    mark: str, settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    flag, banner_id, banner_text = CASES[mark]
    with session_scope(session_factory) as session:
        study, _report = drafted_study(session, STUDY_UID)
        study.identity_disputed_at = utcnow()
        if mark == "withdrawn":
            study.withdrawn_at = utcnow()
        create_user(session, "alan", role=Role.ATTENDING, password=PASSWORD, full_name="Alan A")
    base = f"http://127.0.0.1:{settings.http_port}"
    with (
        radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        chromium() as driver,
    ):
        log_in(driver, base, "alan", PASSWORD)
        row = f"tr[data-study-uid='{STUDY_UID}']"
        WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: any(flag in r.text for r in d.find_elements(By.CSS_SELECTOR, row))
        )
        driver.get(f"{base}/cases/{STUDY_UID}")
        wait_for(driver, "#case[data-loaded='true']")
        assert banner_text in driver.find_element(By.ID, banner_id).text
        banners = driver.find_elements(By.CSS_SELECTOR, ".identity-banner")
        assert len(banners) == 1, "one banner: a withdrawal is the dispute's decision"
        if mark == "withdrawn":  # closed: nothing to press, nothing to type into
            assert not driver.find_element(By.ID, "sign").is_displayed()
            assert driver.find_element(By.ID, "findings").get_attribute("readonly") is not None
        else:  # the attending may try, and is told why not
            driver.find_element(By.ID, "sign").click()
            WebDriverWait(driver, 30).until(
                lambda d: (
                    "patient identity is disputed" in d.find_element(By.ID, "editor-error").text
                )
            )
            assert driver.current_url.endswith(f"/cases/{STUDY_UID}"), "still on the case"
        screenshot(driver, f"case-identity-{mark}")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_corrected_study_says_so_and_can_be_signed_in_chromium(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_scope(session_factory) as session:
        study, _report = drafted_study(session, STUDY_UID)
        study.patient_corrections = 1  # as `radraft study correct-patient` leaves it
        create_user(session, "alan", role=Role.ATTENDING, password=PASSWORD, full_name="Alan A")
    base = f"http://127.0.0.1:{settings.http_port}"
    with (
        radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        chromium() as driver,
    ):
        log_in(driver, base, "alan", PASSWORD)
        driver.get(f"{base}/cases/{STUDY_UID}")
        wait_for(driver, "#case[data-loaded='true']")
        (banner,) = driver.find_elements(By.CSS_SELECTOR, ".identity-banner")
        assert banner.get_attribute("id") == "corrected-banner"
        assert "Patient corrected" in banner.text
        assert driver.find_element(By.ID, "sign").is_displayed(), "the report is open"
        assert driver.find_element(By.ID, "findings").get_attribute("readonly") is None
        screenshot(driver, "case-identity-corrected")
