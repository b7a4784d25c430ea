"""The edit-and-sign loop in headless Chromium against ``radraft serve``, end to end.

A study goes in with storescu, the embedded worker drafts it with the demo model, a resident
edits and submits it in the browser (with a reload in the middle), an attending edits and
signs; then the database, the timing data and the delivered SR and ORU are checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import TimingEventType
from radraft.models import EditSession, ReportRevision, TimingEvent, User
from radraft.settings import Settings, settings_to_environment
from radraft.synthetic import make_chest_study
from reporting.timing import StampedEvent, derive_times
from tests.conftest import ReportDestinations
from tests.dicom_peers import storescu, synthetic_study_files
from tests.e2e.browser import attribute, chromium, log_in, log_out, screenshot, wait_for
from tests.processes import radraft_process
from tests.support import wait_until

PASSWORD = "browser test password"
RESIDENT_TEXT = " Resident adds: no pneumothorax."
ATTENDING_TEXT = " Attending confirms."


def add_user(settings: Settings, username: str, role: str, full_name: str) -> None:
    """Through the CLI, as an operator does."""
    completed = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "users", "add", username, "--role", role,
         "--full-name", full_name, "--password-stdin"],
        input=PASSWORD + "\n", text=True, capture_output=True, timeout=60,
        env={**settings_to_environment(settings), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr


def image_shown(driver: WebDriver) -> bool:
    return bool(
        driver.execute_script(
            "const i = document.getElementById('image');"
            "return i.complete && i.naturalWidth > 0 && i.src.includes('preview.png');"
        )
    )


def open_case(driver: WebDriver, study_uid: str) -> None:
    """From the worklist: click the study, wait for the report and the first image.

    The live worklist replaces its rows at every poll, so a link found just before one is gone
    by the click (a stale element): it is found and clicked again."""
    link = f"tr[data-study-uid='{study_uid}'] a.open-case"
    wait_for(driver, link)

    def clicked(current: WebDriver) -> bool:
        current.find_element(By.CSS_SELECTOR, link).click()
        return True

    WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(clicked)
    wait_for(driver, "#case[data-loaded='true']")
    WebDriverWait(driver, 30).until(image_shown)


def type_into(driver: WebDriver, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.click()
    driver.execute_script("arguments[0].setSelectionRange(1e9, 1e9)", box)
    box.send_keys(text)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_resident_edits_and_submits_attending_signs_in_chromium(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    report_destinations: ReportDestinations,
) -> None:
    settings = settings.model_copy(
        update={
            **report_destinations.settings_update(),
            "viewer_url_template": "https://viewer.example/ohif?StudyInstanceUIDs={study_instance_uid}",
            "worklist_poll_seconds": 1.0,
        }
    )
    add_user(settings, "rita", "resident", "Rita Resident")
    add_user(settings, "alan", "attending", "Alan Attending")
    base = f"http://127.0.0.1:{settings.http_port}"
    study_uid = str(make_chest_study(60)[0].StudyInstanceUID)
    ris = report_destinations.ris
    with radraft_process(settings, ["serve"], tmp_path / "serve.log", ready_text="celery@"):
        with chromium() as driver:
            log_in(driver, base, "rita", PASSWORD)
            worklist_updates_live(driver, settings, tmp_path, study_uid)
            resident_session(driver, study_uid)
            attending_session(driver, base, study_uid)
        wait_until(
            lambda: len(ris.messages) == 3 and len(report_destinations.stored_srs()) == 3,
            timeout=60,
            what="draft, preliminary and final SRs and ORUs to be delivered",
        )
    check_database(session_factory, settings)
    final_sr = max((dcmread(path) for path in report_destinations.stored_srs()),
                   key=lambda sr: int(sr.InstanceNumber))  # fmt: skip
    assert (final_sr.CompletionFlag, final_sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert [str(message.segment("OBR")[25]) for message in ris.messages] == ["R", "P", "F"]
    assert ATTENDING_TEXT.strip() in str(ris.messages[-1])


def worklist_updates_live(
    driver: WebDriver, settings: Settings, tmp_path: Path, study_uid: str
) -> None:
    """The open worklist shows the study arrive and become drafted, without a reload."""
    driver.execute_script("window.radraftNotReloaded = true;")
    assert driver.find_elements(By.CSS_SELECTOR, "tr[data-study-uid]") == []
    assert storescu(synthetic_study_files(60, tmp_path / "s"), port=settings.dicom_port)
    row = f"tr[data-study-uid='{study_uid}']"
    # The worklist redraws its rows as it polls: a row found may be replaced before it is read.
    WebDriverWait(driver, 120, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: any("drafted" in r.text for r in d.find_elements(By.CSS_SELECTOR, row))
    )
    assert driver.execute_script("return window.radraftNotReloaded === true;")
    screenshot(driver, "worklist")


def resident_session(driver: WebDriver, study_uid: str) -> None:
    open_case(driver, study_uid)
    assert "not for clinical use" in driver.find_element(By.ID, "demo-banner").text
    assert attribute(driver, "viewer-link", "href").endswith(study_uid)
    check_viewer_controls(driver)
    assert attribute(driver, "findings", "value").startswith("[DEMO MODEL")
    type_into(driver, "findings", RESIDENT_TEXT)
    # A reload right after typing: the text comes back and the edit session resumes.
    driver.refresh()
    wait_for(driver, "#case[data-loaded='true']")
    restored = attribute(driver, "findings", "value")
    assert restored.endswith(RESIDENT_TEXT), "a reload loses no keystroke"
    type_into(driver, "impression", " Resident impression.")
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "save-status").text.startswith("saved")
    )
    screenshot(driver, "case-resident")
    assert driver.find_element(By.ID, "sign").is_displayed() is False, "a resident cannot sign"
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/worklist"))
    log_out(driver)


def check_viewer_controls(driver: WebDriver) -> None:
    """View switch, window presets and zoom change what is shown."""
    image = driver.find_element(By.ID, "image")
    first_src = image.get_attribute("src")
    buttons = driver.find_elements(By.CSS_SELECTOR, ".view-button")
    assert [button.text for button in buttons] == ["PA", "LATERAL"], "frontal first"
    buttons[1].click()
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.find_element(By.ID, "image").get_attribute("src") != first_src and image_shown(d)
        )
    )
    lateral_src = image.get_attribute("src")
    driver.find_element(By.CSS_SELECTOR, "#window-preset option[value='narrow']").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "image").get_attribute("src") != lateral_src
    )
    driver.find_element(By.ID, "zoom-in").click()
    assert "scale(1.25)" in (image.get_attribute("style") or "")
    buttons[0].click()


def attending_session(driver: WebDriver, base: str, study_uid: str) -> None:
    log_in(driver, base, "alan", PASSWORD)
    wait_for(driver, f"tr[data-study-uid='{study_uid}']")
    assert (
        "preliminary"
        in driver.find_element(By.CSS_SELECTOR, f"tr[data-study-uid='{study_uid}']").text
    )
    open_case(driver, study_uid)
    assert attribute(driver, "findings", "value").endswith(RESIDENT_TEXT)
    type_into(driver, "impression", ATTENDING_TEXT)
    driver.find_element(By.CSS_SELECTOR, "#diff-new option:last-child").click()
    driver.find_element(By.ID, "diff-show").click()
    wait_for(driver, "#diff ins")
    assert "no pneumothorax." in driver.find_element(By.ID, "diff").text
    screenshot(driver, "case-attending")
    driver.find_element(By.ID, "sign").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/worklist"))


def check_database(factory: sessionmaker[Session], settings: Settings) -> None:
    with session_scope(factory) as session:
        users = {user.id: user.username for user in session.scalars(select(User))}
        revisions = list(session.scalars(select(ReportRevision).order_by(ReportRevision.number)))
        assert [(r.state, users.get(r.author_user_id or 0), r.author_role) for r in revisions] == [
            ("DRAFTED", None, None),
            ("PRELIMINARY", "rita", "resident"),
            ("FINAL", "alan", "attending"),
        ]
        assert revisions[1].findings.endswith(RESIDENT_TEXT)
        assert revisions[2].impression.endswith(ATTENDING_TEXT)
        sessions = list(session.scalars(select(EditSession).order_by(EditSession.id)))
        assert [users[s.user_id] for s in sessions] == ["rita", "alan"], "the reload resumed"
        for edit_session in sessions:
            assert edit_session.ended_at is not None
            events = list(
                session.scalars(
                    select(TimingEvent).where(TimingEvent.edit_session_id == edit_session.id)
                )
            )
            kinds = {event.event_type for event in events}
            assert {"opened", "images_rendered", "draft_shown", "first_input", "input",
                    "submit"} <= kinds, kinds  # fmt: skip
            times = derive_times(
                [StampedEvent(TimingEventType(e.event_type), e.server_at, e.payload or {})
                 for e in events],
                idle_threshold=settings.idle_threshold_seconds,
            )  # fmt: skip
            assert 0 < times.active_seconds <= times.total_seconds < 300
            assert times.time_to_first_input_seconds is not None
            assert 0 < times.time_to_first_input_seconds < times.total_seconds
            assert times.keystrokes > 0
            assert times.characters_inserted >= len(ATTENDING_TEXT)
        opened: dict[str, Any] = {}
        for event in session.scalars(select(TimingEvent).where(TimingEvent.event_type == "opened")):
            opened.setdefault(str(event.edit_session_id), []).append(event.payload)
        assert len(opened[str(sessions[0].id)]) == 2, "the reload opened the same session again"
