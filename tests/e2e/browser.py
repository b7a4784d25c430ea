"""Headless Chromium (Debian's chromium and chromedriver) driven by Selenium, and page helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.support import REPO_ROOT, require_tool

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A fresh headless browser profile; the driver path is given, so nothing is downloaded."""
    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--window-size=1500,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def attribute(driver: WebDriver, element_id: str, name: str) -> str:
    """An attribute (or property, such as a textarea's value) of the element with that id."""
    value = driver.find_element(By.ID, element_id).get_attribute(name)
    assert value is not None, f"#{element_id} has no {name}"
    return value


def wait_for(driver: WebDriver, css: str, timeout: float = 30.0) -> None:
    """Until an element matching ``css`` is visible."""
    WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def log_in(driver: WebDriver, base: str, username: str, password: str) -> None:
    """Through the login page, as a person does; lands on the worklist."""
    driver.get(f"{base}/")
    wait_for(driver, "#login-form")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, 30).until(expected_conditions.url_contains("/worklist"))


def log_out(driver: WebDriver) -> None:
    """The header's log-out button."""
    driver.find_element(By.ID, "logout").click()
    WebDriverWait(driver, 30).until(expected_conditions.url_contains("/login"))


def screenshot(driver: WebDriver, name: str) -> Path:
    """Keep a screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.execute_script("window.scrollTo(0, 0);")
    assert driver.save_screenshot(str(path)), f"screenshot {name} failed"
    return path
