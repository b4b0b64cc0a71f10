"""The Docker daemon stops and comes back under load; the runtime recovers without a restart."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from typing import Any

import pytest

from runtime.errors import Conflict, ProviderUnavailable, WorkspaceError
from tests.conftest import ROOT, MakeDockerRuntime
from tests.helpers import poll_until

pytestmark = [pytest.mark.docker, pytest.mark.restarts_docker]


def dockerd(action: str) -> None:
    """Stop or start the daemon with the project's own script (as `make test` starts it)."""
    subprocess.run([str(ROOT / "scripts" / "dockerd.sh"), action], check=True, cwd=ROOT, timeout=120)


def test_docker_stopped_and_restarted_under_load_recovers_without_a_runtime_restart(
    make_docker_runtime: MakeDockerRuntime, docker_client: Any
) -> None:
    live_restore = bool(docker_client.info().get("LiveRestoreEnabled"))
    runtime = make_docker_runtime(health_interval_s=1.0)
    outcomes: Counter[str] = Counter()
    unexpected: list[WorkspaceError] = []
    done = threading.Event()
    with runtime.client(timeout_s=60) as client:
        workspaces = [client.create() for _ in range(3)]
        for record in workspaces:
            client.write_file(record.id, "/workspace/marker", record.id.encode())

        def load(offset: int) -> None:
            with runtime.client(timeout_s=60) as loader:
                turn = offset
                while not done.is_set():
                    record = workspaces[turn % len(workspaces)]
                    turn += 1
                    try:
                        loader.exec(record.id, ["true"])
                        outcomes["ok"] += 1
                    except ProviderUnavailable as exc:
                        outcomes["unavailable" if exc.retryable else "unexpected"] += 1
                    except Conflict:
                        outcomes["conflict"] += 1  # its container went with the daemon
                    except WorkspaceError as exc:  # a timeout would mean a request hung
                        unexpected.append(exc)
                    done.wait(0.05)

        loaders = [threading.Thread(target=load, args=(n,)) for n in range(2)]
        for loader in loaders:
            loader.start()
        try:
            poll_until(lambda: outcomes["ok"] >= 5)
            dockerd("stop")
            try:
                poll_until(lambda: not client.providers()[0].healthy, timeout_s=30)
                with pytest.raises(ProviderUnavailable) as refused:
                    client.create()
                assert refused.value.retryable
                poll_until(lambda: outcomes["unavailable"] >= 3, timeout_s=30)
            finally:
                dockerd("start")
            poll_until(lambda: client.providers()[0].healthy, timeout_s=60)
            if live_restore:
                served = outcomes["ok"]
                poll_until(lambda: outcomes["ok"] >= served + 5, timeout_s=60)
        finally:
            done.set()
            for loader in loaders:
                loader.join(120)
        assert not unexpected, unexpected
        assert outcomes["unexpected"] == 0

        if live_restore:  # the workspaces lived through it and are still the same ones
            for record in workspaces:
                assert client.get(record.id).state == "ready"
                assert client.read_file(record.id, "/workspace/marker") == record.id.encode()
                # Its agent came back, and the one cut off with the daemon did not linger.
                poll_until(lambda record=record: client.exec(record.id, "true").via == "agent", timeout_s=60)
                agents = client.exec(record.id, "ps -eo args= | grep -c '[a]w-agent'").stdout
                assert agents == b"1\n"
        else:  # they died with the daemon: reconciliation says so
            poll_until(lambda: all(client.get(record.id).state == "failed" for record in workspaces))
        fresh = client.create()
        assert client.exec(fresh.id, ["true"]).exit_code == 0
        for record in [*workspaces, fresh]:
            client.destroy(record.id)
