"""The Docker side of the E2B stand-in: one real container per sandbox, found by its labels.

A stand-in sandbox must really run commands and hold files, so each one is a container of
the project's base workspace image, kept up by ``sleep infinity`` under Docker's init (which
reaps the orphans a killed command leaves). The control plane creates, pauses and removes
these containers; the SDK-boundary fakes (``tests.e2b_standin.sandbox``) run commands and
move files in them. The two sides share nothing but the labels and the Docker daemon, so
they may live in different processes, as the E2B API and a sandbox's envd do.

One-shot and streaming ``docker exec`` go through the Docker CLI: it keeps stdout, stderr
and stdin apart, is binary-safe and reports the exit code, which the SDK's exec API makes
awkward (multiplexed sockets, no half-close of stdin).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Literal

import docker
import docker.errors

from runtime.config import load_settings

__all__ = [
    "DEFAULT_USER",
    "LABEL_PLANE",
    "LABEL_SANDBOX",
    "RECORDS_DIR",
    "ContainerState",
    "SandboxContainer",
    "create_sandbox_container",
    "default_image",
    "docker_client",
    "leftover_standin_containers",
    "remove_all_standin_containers",
]

LABEL_SANDBOX = "e2b-standin.sandbox"
"""Label carrying the sandbox id of the container behind a sandbox."""
LABEL_PLANE = "e2b-standin.plane"
"""Label carrying the id of the ``ControlPlane`` that created the container."""
DEFAULT_USER = "user"
"""E2B's default user (home ``/home/user``): commands and files run as it unless told otherwise."""
RECORDS_DIR = "/run/e2b-standin"
"""Where each started command leaves a record (its pid as file name), so ``commands.list()``
and ``commands.kill()`` see the commands of every process attached to the sandbox, as envd
sees all the commands it started. World-writable and sticky: commands run as any user."""

ContainerState = Literal["running", "paused", "gone"]

# Run as root right after the container starts, before the create call answers: E2B's
# templates have the user `user`; images without useradd (busybox) get adduser.
_SETUP = (
    f"id {DEFAULT_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {DEFAULT_USER} 2>/dev/null "
    f"|| adduser -D -s /bin/sh {DEFAULT_USER}; mkdir -p {RECORDS_DIR} && chmod 1777 {RECORDS_DIR}"
)


@cache
def docker_client() -> Any:
    """One Docker API client per process (the SDK's clients are safe to share between threads)."""
    return docker.from_env(version="auto")


@cache
def _docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("the E2B stand-in needs the docker CLI on PATH")
    return found


def default_image() -> str:
    """The project's base workspace image (what a real E2B `base` template stands for here)."""
    return load_settings(env={}).default_image


def create_sandbox_container(client: Any, image: str, sandbox_id: str, plane_id: str, env: Mapping[str, str]) -> str:
    """Start the container behind a new sandbox, with E2B's default user in it; return its id."""
    container = client.containers.run(
        image,
        ["sleep", "infinity"],
        name=f"e2b-standin-{sandbox_id}",
        detach=True,
        init=True,  # reaps what killed commands leave behind
        runtime="runc",
        network_mode="none",
        environment=dict(env),
        labels={LABEL_SANDBOX: sandbox_id, LABEL_PLANE: plane_id},
    )
    try:
        code, output = container.exec_run(["/bin/sh", "-c", _SETUP], user="root")
        if code != 0:
            raise RuntimeError(f"setting up sandbox {sandbox_id} failed ({code}): {output!r}")
    except BaseException:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)
        raise
    return str(container.id)


def _label_filter(plane_id: str | None) -> dict[str, list[str]]:
    return {"label": [LABEL_PLANE if plane_id is None else f"{LABEL_PLANE}={plane_id}"]}


def leftover_standin_containers(plane_id: str | None = None, client: Any = None) -> list[str]:
    """Names of the stand-in containers (of one plane, or of all) that still exist."""
    client = client or docker_client()
    return [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=_label_filter(plane_id))]


def remove_all_standin_containers(plane_id: str | None = None, client: Any = None) -> list[str]:
    """Remove every stand-in container (of one plane, or of all); return their names."""
    client = client or docker_client()
    removed = []
    for found in client.api.containers(all=True, filters=_label_filter(plane_id)):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(found["Id"], force=True)
        removed.append(found["Names"][0].lstrip("/"))
    return removed


class SandboxContainer:
    """The container behind one sandbox, as the envd fakes reach it: by label, every time.

    The id is looked up again whenever the container is asked about, so a sandbox that
    was killed (container removed) or paused is seen as such at once.
    """

    def __init__(self, sandbox_id: str, client: Any = None) -> None:
        self.sandbox_id = sandbox_id
        self._client = client or docker_client()

    @property
    def gone_message(self) -> str:
        """What E2B's proxy answers for a sandbox that is not running (the SDK keys on "was not found")."""
        return f"The sandbox {self.sandbox_id} was not found"

    def lookup(self) -> tuple[str | None, ContainerState]:
        """The container id (``None`` when gone) and whether it runs, in one API call."""
        found = self._client.api.containers(all=True, filters={"label": f"{LABEL_SANDBOX}={self.sandbox_id}"})
        if not found:
            return None, "gone"
        state = found[0]["State"]
        if state == "paused":
            return found[0]["Id"], "paused"
        return found[0]["Id"], "running" if state == "running" else "gone"

    def state(self) -> ContainerState:
        return self.lookup()[1]

    def running_id(self) -> str | None:
        """The container id when the sandbox runs, else ``None``."""
        container_id, state = self.lookup()
        return container_id if state == "running" else None

    def exec_argv(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str = "root",
        env: Mapping[str, str] | None = None,
        interactive: bool = False,
    ) -> list[str]:
        """The ``docker exec`` command line running ``argv`` in the container."""
        cli = [_docker_cli(), "exec"]
        if interactive:
            cli.append("-i")
        cli += ["-u", user]
        for key, value in (env or {}).items():
            cli += ["-e", f"{key}={value}"]
        return [*cli, container_id, *argv]

    def run(
        self, container_id: str, argv: Sequence[str], *, user: str = "root", stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` in the container to its end; stdin is ``stdin`` or empty."""
        return subprocess.run(
            self.exec_argv(container_id, argv, user=user, interactive=stdin is not None),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
