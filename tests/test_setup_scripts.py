"""scripts/setup.sh's runsc registration (scripts/register_runsc.py) and its check of RUNSC_PLATFORM."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _register_runsc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("register_runsc", ROOT / "scripts" / "register_runsc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


register_runsc = _register_runsc()


def test_a_fresh_daemon_json_gets_runsc_with_host_network_and_live_restore(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "daemon.json"
    assert register_runsc.register(str(path))
    config = json.loads(path.read_text())
    assert config == {
        "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}},
        "live-restore": True,
    }


def test_a_platform_is_passed_to_runsc_and_other_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}))
    assert register_runsc.register(str(path), "ptrace")
    config = json.loads(path.read_text())
    assert config["runtimes"]["runsc"]["runtimeArgs"] == ["--network=host", "--platform=ptrace"]
    assert config["log-level"] == "warn" and config["runtimes"]["other"] == {"path": "/bin/other"}


def test_an_existing_registration_is_never_changed(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    mine = {"runtimes": {"runsc": {"path": "/opt/runsc", "runtimeArgs": ["--debug"]}}, "live-restore": False}
    path.write_text(json.dumps(mine))
    assert not register_runsc.register(str(path), "ptrace")
    assert json.loads(path.read_text()) == mine


def test_a_platform_runsc_does_not_have_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daemon.json"
    assert register_runsc.main([str(path), "firecracker"]) == 2
    assert "is not a runsc platform (systrap, ptrace, kvm)" in capsys.readouterr().err
    assert not path.exists()


def test_setup_refuses_an_unknown_runsc_platform_before_it_changes_anything(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "RUNSC_PLATFORM": "fast", "VENV": str(venv), "DAEMON_JSON": str(tmp_path / "daemon.json")}
    setup = ["bash", str(ROOT / "scripts" / "setup.sh")]
    done = subprocess.run(setup, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "RUNSC_PLATFORM=fast is not a runsc platform" in done.stderr
    assert not venv.exists() and not (tmp_path / "daemon.json").exists()
