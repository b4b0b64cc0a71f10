"""``workspaces doctor``: the troubleshooting list, run as checks.

Each check says PASS, WARN or FAIL, what it found, and for WARN and FAIL the fix in one
sentence. The checks follow the deployment guide's troubleshooting section: the Docker
daemon answers, disk space, the base image, gVisor's ``runsc`` runs a container, the
providers are healthy, there is headroom under ``WORKSPACE_MAX_CONCURRENT``, the
configuration (and the master switch MCP servers need) is right, the state directory is
writable, the MCP servers' file reads and their images are present, and when the e2b
provider is in use, its key is set and E2B's API is reachable (DNS, TCP, TLS) and accepts
the key (``doctor_e2b``). The runtime's own
view (providers, capacity, MCP servers) is asked over its endpoint when it runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import docker
import psutil

from runtime.config import Settings, load_settings
from runtime.errors import ConfigError, WorkspaceError
from runtime.monitoring.checks import Check
from runtime.monitoring.doctor_e2b import e2b_checks, e2b_in_use
from runtime.monitoring.doctor_mcp import mcp_config, mcp_images, mcp_status
from runtime.wire.auth import read_token
from runtime.wire.client import Client
from runtime.wire.security import client_curve

__all__ = ["Check", "run_checks"]

_DOCTOR_LABEL = "agent-workspaces.doctor"
_DISK_FAIL_PCT = 95.0
_RUNTIME_TIMEOUT_S = 3.0


def run_checks(env: dict[str, str] | None = None) -> list[Check]:
    """Run every check (none raises) and return their outcomes in order."""
    checks: list[Check] = []
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        return [Check("configuration", "FAIL", exc.message, "correct that variable (see configs/default.toml)")]
    where = settings.config_file or "built-in defaults"
    checks.append(Check("configuration", "PASS", f"every variable is valid (file: {where})"))
    checks.append(_master_switch(settings))
    checks.append(_state_dir(settings))
    mcp, mcp_servers = mcp_config(settings)
    checks.append(mcp)
    client = _docker()
    checks.append(_daemon(client))
    if isinstance(client, docker.DockerClient):
        with contextlib.closing(client):
            checks += [_disk(client, settings), _image(client, settings), _runsc(client, settings)]
            images = mcp_images(client, mcp_servers)
            checks += [images] if images is not None else []
    else:
        skipped = "not checked: the Docker daemon does not answer"
        checks += [Check(name, "WARN", skipped, "start Docker first") for name in ("disk space", "base image", "runsc")]
    if e2b_in_use(settings):
        checks += e2b_checks(settings)
    checks += list(_runtime(settings))
    return checks


# ---------------------------------------------------------------------- configuration


def _master_switch(settings: Settings) -> Check:
    if settings.enabled:
        return Check("master switch", "PASS", "ENABLE_AGENT_WORKSPACES is true")
    return Check(
        "master switch",
        "WARN",
        "ENABLE_AGENT_WORKSPACES is false: every workspace op (and MCP servers) answers `disabled`",
        "set ENABLE_AGENT_WORKSPACES=true (`make run` does) and restart the runtime",
    )


def _state_dir(settings: Settings) -> Check:
    path = settings.state_dir
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "state directory",
            "FAIL",
            f"{path} is not writable: {exc.strerror}",
            "make WORKSPACE_STATE_DIR writable by this user, or point it at a directory that is",
        )
    return Check("state directory", "PASS", f"{path} is writable")


# ---------------------------------------------------------------------- Docker


def _docker() -> docker.DockerClient | str:
    try:
        client = docker.from_env(version="auto", timeout=10)
        client.ping()
    except docker.errors.DockerException as exc:
        return str(exc)
    return client


def _daemon(client: docker.DockerClient | str) -> Check:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if isinstance(client, str):
        return Check(
            "docker daemon",
            "FAIL",
            f"no answer at {where}: {client}",
            "start Docker (`scripts/dockerd.sh start`, or `systemctl start docker`); "
            "as root on Debian, `make run` installs and starts it",
        )
    version = client.version().get("Version", "?")
    return Check("docker daemon", "PASS", f"Docker {version} answers at {where}")


def _disk(client: docker.DockerClient, settings: Settings) -> Check:
    root = str(client.info().get("DockerRootDir") or "/var/lib/docker")
    try:
        usage = psutil.disk_usage(root)
    except OSError as exc:  # the daemon is remote, or its data root is not visible here
        return Check(
            "disk space", "WARN", f"cannot measure {root} from here: {exc.strerror}", "run doctor beside the daemon"
        )
    df = client.df()
    images = sum(int(image.get("Size") or 0) for image in df.get("Images") or [])
    volumes = sum(int((v.get("UsageData") or {}).get("Size") or 0) for v in df.get("Volumes") or [])
    detail = (
        f"{root}: {usage.percent:.0f}% used, {usage.free >> 30} GiB free "
        f"(images {images >> 20} MiB, volumes {max(volumes, 0) >> 20} MiB)"
    )
    fix = "free space: `docker system prune` removes unused images, containers and build cache"
    if usage.percent >= _DISK_FAIL_PCT:
        return Check("disk space", "FAIL", detail, fix)
    if usage.percent >= settings.alert_threshold_pct:
        return Check("disk space", "WARN", detail, fix)
    return Check("disk space", "PASS", detail)


def _image(client: docker.DockerClient, settings: Settings) -> Check:
    image = settings.default_image
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return Check(
            "base image",
            "FAIL",
            f"{image} is not present (no registry is needed: it is built locally)",
            "run `make setup`, which builds it with mmdebstrap, or set WORKSPACE_DEFAULT_IMAGE to an image you have",
        )
    return Check("base image", "PASS", f"{image} is present")


def _runsc(client: docker.DockerClient, settings: Settings) -> Check:
    runtimes = client.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        return Check(
            "runsc",
            "WARN",
            "Docker has no runsc runtime: workspaces run on runc, without gVisor's isolation",
            "install runsc and register it in /etc/docker/daemon.json (see docs/gvisor.md), then restart Docker",
        )
    try:
        output = client.containers.run(
            settings.default_image,
            ["uname", "-r"],
            runtime="runsc",
            remove=True,
            labels={_DOCTOR_LABEL: "true"},
            network_mode="none",
        )
    except docker.errors.DockerException as exc:
        return Check(
            "runsc",
            "FAIL",
            f"a throwaway container under runsc failed: {str(exc).strip()[:300]}",
            "see docs/gvisor.md (runsc 20240729 or newer, registered with --network=host)",
        )
    kernel = output.decode(errors="replace").strip()
    return Check("runsc", "PASS", f"a throwaway container ran under gVisor (kernel {kernel})")


# ---------------------------------------------------------------------- the runtime's own view


def _runtime(settings: Settings) -> Iterator[Check]:
    try:
        token = read_token(settings)
    except WorkspaceError:
        token = ""
    ask = _asker(settings, token)
    try:
        providers = ask("providers")
    except WorkspaceError as exc:
        yield Check(
            "runtime",
            "WARN",
            f"providers and capacity not checked: the runtime does not answer at {settings.zmq_endpoint} "
            f"({exc.message})",
            "start it (`make run` or `workspaces serve`); its log says why if it stopped",
        )
        return
    for status in providers:
        name = f"provider {status['name']}"
        if status["healthy"]:
            yield Check(name, "PASS", f"healthy (runtime {status['runtime']}, {status['workspaces']} workspaces)")
        else:
            yield Check(
                name, "FAIL", f"unhealthy: {status['detail']}", "fix what the detail says; see the runtime's log"
            )
    stats = ask("stats")
    active, limit = stats["capacity"]["active"], stats["capacity"]["limit"]
    detail = f"{active} of {limit} slots taken (WORKSPACE_MAX_CONCURRENT)"
    fix = "destroy unused workspaces (`workspaces ls`, `workspaces rm`) or raise WORKSPACE_MAX_CONCURRENT"
    if active >= limit:
        yield Check("capacity", "FAIL", detail + ": creates answer `capacity`", fix)
    elif 100 * active / limit >= settings.alert_threshold_pct:
        yield Check("capacity", "WARN", detail, fix)
    else:
        yield Check("capacity", "PASS", detail)
    status = mcp_status(ask("mcp_list"))
    if status is not None:
        yield status


def _asker(settings: Settings, token: str) -> Callable[[str], Any]:
    def ask(op: str) -> Any:
        server_key, client_keys = client_curve(settings) or (None, None)  # as the CLI connects
        with Client(settings.zmq_endpoint, token, timeout_s=_RUNTIME_TIMEOUT_S, server_key=server_key,
                    client_keys=client_keys) as client:  # fmt: skip
            return client.call(op)

    return ask
