"""A timing-study read in headless Chromium: open, edit, submit, feedback, next case."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import EditSession, StudyRead, TimingEvent
from radraft.settings import Settings
from reporting.reader_study.enrolment import create_reader_study
from reporting.reader_study.protocol import parse_protocol
from tests.e2e.browser import chromium, log_in, screenshot, wait_for
from tests.processes import radraft_process
from tests.reader_study.simulated import build_world, protocol_yaml
from tests.reporting.web_support import PASSWORD


@pytest.mark.parametrize("backend", ["sqlite"])
def test_resident_reads_a_study_case_in_chromium(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    residents, attendings, cases = build_world(session_factory, residents=1, attendings=1,
                                               cases=4)  # fmt: skip
    with session_scope(session_factory) as session:
        create_reader_study(session, parse_protocol(
            protocol_yaml("browser", residents, attendings, cases, reads_per_reader=3, seed=2)
        ))  # fmt: skip
    base = f"http://127.0.0.1:{settings.http_port}"
    with (
        radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        chromium() as driver,
    ):
        log_in(driver, base, residents[0], PASSWORD)
        driver.get(f"{base}/reading")
        wait_for(driver, "#reading[data-loaded='true']")
        first_url = driver.current_url
        has_draft = driver.find_element(By.ID, "reading").get_attribute("data-has-draft")
        label = driver.find_element(By.ID, "draft-label").text
        assert label == ("Draft report" if has_draft == "true" else "Your report")
        findings = driver.find_element(By.ID, "findings")
        findings.click()
        findings.send_keys(" Small right effusion.")
        impression = driver.find_element(By.ID, "impression")
        impression.click()
        impression.send_keys(" Effusion.")
        screenshot(driver, "timing-study-read")
        driver.find_element(By.ID, "submit-read").click()
        wait_for(driver, "#feedback-form")
        if has_draft == "true":
            Select(driver.find_element(By.NAME, "efficiency")).select_by_visible_text("writing")
            driver.find_element(By.CSS_SELECTOR, "input[value='laterality']").click()
        driver.find_element(By.ID, "submit-feedback").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url != first_url)
        wait_for(driver, "#reading[data-loaded='true']")
    read_id = int(first_url.rsplit("/", 1)[1])
    with session_scope(session_factory) as session:
        read = session.get(StudyRead, read_id)
        assert read is not None
        assert read.status == "done"
        assert read.final_findings is not None
        assert read.final_findings.endswith("Small right effusion.")
        assert read.feedback is not None
        if has_draft == "true":
            assert read.feedback["efficiency"] == "writing"
            assert read.feedback["edit_reasons"] == ["laterality"]
        edit_session = session.scalar(
            select(EditSession).where(EditSession.study_read_id == read_id)
        )
        assert edit_session is not None
        assert edit_session.ended_at is not None
        kinds = set(session.scalars(select(TimingEvent.event_type).where(
            TimingEvent.edit_session_id == edit_session.id)))  # fmt: skip
    assert {"opened", "draft_shown", "first_input", "input", "submit"} <= kinds
