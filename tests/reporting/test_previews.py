"""Image previews rendered from the spooled DICOM, behind read access."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import Instance, Study
from radraft.settings import Settings
from reporting.web.app import create_app

TOKEN = {"Authorization": "Bearer test-service-token"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_preview_png_with_window_presets(
    received_study: Study, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_scope(session_factory) as session:
        sop_uid = session.scalars(select(Instance.sop_instance_uid)).first()
    url = f"/api/instances/{sop_uid}/preview.png"
    with TestClient(create_app(settings)) as client:
        assert client.get(url).status_code == 401
        default = client.get(url, params={"size": 128}, headers=TOKEN)
        assert default.status_code == 200
        assert default.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(default.content)))
        assert image.shape == (128, 128)
        assert image.std() > 10
        narrow = client.get(url, params={"size": 128, "center": 1000, "width": 200}, headers=TOKEN)
        narrow_image = np.asarray(Image.open(io.BytesIO(narrow.content)))
        saturated = (narrow_image == 0).mean() + (narrow_image == 255).mean()
        assert saturated > (image == 0).mean() + (image == 255).mean(), "a narrow window clips"
        assert client.get(url, params={"center": 5}, headers=TOKEN).status_code == 422
        start = client.get(f"/api/instances/{sop_uid}/window", headers=TOKEN)
        assert start.status_code == 200
        header = start.json()
        assert header["width"] > 0
        same = client.get(
            url, params={"size": 128, "center": header["center"], "width": header["width"]},
            headers=TOKEN,
        )  # fmt: skip
        same_image = np.asarray(Image.open(io.BytesIO(same.content)), dtype=np.float32)
        difference = np.abs(same_image - image.astype(np.float32)).mean()
        assert difference < 3, "dragging starts from the window shown by default"
        assert client.get("/api/instances/1.2.3/preview.png", headers=TOKEN).status_code == 404
