"""Settings: the environment contract, comma lists, and refusing misspelt variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from radraft.errors import ConfigurationError
from radraft.settings import Settings, load_settings, settings_to_environment
from tests.support import REPO_ROOT


def test_environment_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RADRAFT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("RADRAFT_AE_TITLE", "PACSGATE")
    monkeypatch.setenv("RADRAFT_DICOM_PORT", "104")
    monkeypatch.setenv("RADRAFT_HTTP_PORT", "8080")
    monkeypatch.setenv("RADRAFT_STABLE_SECONDS", "3.5")
    monkeypatch.setenv("RADRAFT_ALLOWED_CALLING_AES", "MOD1, MOD2 ,")
    monkeypatch.setenv("RADRAFT_HL7_ALLOWED_SENDERS", "EPIC,  RIS2")
    monkeypatch.setenv("RADRAFT_API_TOKEN", "secret-token")
    monkeypatch.setenv("RADRAFT_BROKER_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.ae_title == "PACSGATE"
    assert settings.dicom_port == 104
    assert settings.http_port == 8080
    assert settings.stable_seconds == 3.5
    assert settings.allowed_calling_aes == ["MOD1", "MOD2"]
    assert settings.hl7_allowed_senders == ["EPIC", "RIS2"]
    assert settings.api_token == "secret-token"
    assert not settings.embedded_broker
    assert settings.effective_database_url == f"sqlite:///{(tmp_path / 'd' / 'radraft.db')}"


def test_defaults_are_the_embedded_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.ae_title == "RADRAFT"
    assert settings.dicom_port == 11112
    assert settings.http_port == 8000
    assert settings.stable_seconds == 10
    assert settings.allowed_calling_aes == []
    assert settings.hl7_allowed_senders == []
    assert settings.embedded_broker
    assert settings.effective_database_url.startswith("sqlite:///")


def test_misspelt_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADRAFT_STABLE_SECOND", "3")
    with pytest.raises(ConfigurationError, match="RADRAFT_STABLE_SECOND"):
        load_settings()


def test_dotenv_with_unknown_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RADRAFT_DICOM_PORTT=1\n")
    with pytest.raises(ValueError, match="dicom_portt"):
        Settings()


def test_child_environment_recreates_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, allowed_calling_aes=["A", "B"], strict_body_part=True, dicom_port=1
    )
    environment = settings_to_environment(settings)
    assert environment["RADRAFT_ALLOWED_CALLING_AES"] == "A,B"
    assert environment["RADRAFT_STRICT_BODY_PART"] == "true"
    assert "RADRAFT_DATABASE_URL" not in environment
    values: dict[str, object] = {
        k.removeprefix("RADRAFT_").lower(): v for k, v in environment.items()
    }
    assert Settings.model_validate(values) == settings


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    undocumented = [
        name for name in Settings.model_fields if f"`RADRAFT_{name.upper()}`" not in readme
    ]
    assert undocumented == [], "add these to the README's configuration table"
