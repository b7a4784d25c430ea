"""Helpers for the web tests: one user per role, logging in, a transition body."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
ROLES = ("resident", "attending", "admin", "researcher")


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in; returns the CSRF header the page would send."""
    response = client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def edit(version: int, impression: str = "Impression.") -> dict[str, Any]:
    """A transition body started from ``version``."""
    return {"expected_version": version, "findings": "Findings.", "impression": impression}
