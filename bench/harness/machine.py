"""The machine a run measured on: cores, memory, kernel, Docker and runsc versions.

Ratios in one run travel between machines; absolute numbers do not, so every report
says where it was taken. Anything that cannot be read is reported as ``unknown``
rather than failing the run.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

__all__ = ["describe", "one_line"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _docker() -> tuple[str, str]:
    """Docker's server version and the runsc binary Docker is configured with."""
    try:
        import docker

        client = docker.from_env(version="auto")
        try:
            version = str(client.version().get("Version", "unknown"))
            runtimes = client.info().get("Runtimes") or {}
        finally:
            client.close()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})", "runsc"
    return version, str((runtimes.get("runsc") or {}).get("path") or "runsc")


def _runsc(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].removeprefix("runsc version ").strip() if first else "unknown"


def describe() -> dict[str, Any]:
    """The machine as the report shows it."""
    docker_version, runsc_binary = _docker()
    memory = psutil.virtual_memory().total
    return {
        "cpus": os.cpu_count() or 0,
        "physical_cores": psutil.cpu_count(logical=False) or 0,
        "cpu_model": _cpu_model(),
        "memory_bytes": memory,
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker": docker_version,
        "runsc": _runsc(runsc_binary),
    }


def one_line(machine: dict[str, Any]) -> str:
    """``2 CPUs (model), 23.5 GiB, kernel x, Docker y, runsc z``."""
    return (
        f"{machine.get('cpus')} CPUs ({machine.get('cpu_model')}), {machine.get('memory_gib')} GiB, "
        f"kernel {machine.get('kernel')}, Docker {machine.get('docker')}, runsc {machine.get('runsc')}, "
        f"Python {machine.get('python')}"
    )
