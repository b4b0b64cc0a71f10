"""A private clone through ``git_clone`` with a GitHub App, next to the same clone run raw.

Local stand-ins of GitHub (``tests/github_standins.py``) serve a private repository; a
workspace clones it (1) raw: ``git clone`` through ``exec`` with the token already in
hand (the baseline: the clone alone), (2) through ``git_clone`` with a cached token, and
(3) through ``git_clone`` with a token exchanged at every clone (a stand-in issuing
tokens of 4 minutes, under the 5 the cache keeps). The differences are the runtime's
own cost and the cost of an exchange (JWT signing and one HTTPS round trip, here local).

    python -m bench.github [--clones 20] [--runtime runc]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import docker

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client
from tests.github_standins import FakeGithubApi, GitServer, make_repo, private_key_pem

BASELINE = "raw git clone via exec (token in hand)"


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument("--runtime", default="runc")
    args = parser.parse_args()
    api = FakeGithubApi()
    api.register(1, 2, private_key_pem())
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as repos:
        make_repo(Path(repos), "private.git", {f"src/file{n}.py": f"print({n})\n" * 50 for n in range(200)})
        settings = bench_settings(state, github_app_encryption_key=bytes(32), github_api_url=api.url)
        with (
            Runtime(settings, providers=docker_providers(settings, args.runtime)) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=300) as client,
        ):
            workspace = client.create().id
            gateway = docker.from_env().networks.get(MANAGED_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
            git = GitServer(Path(repos), host=gateway, private={"private.git"}, accepts=api.valid)
            try:
                client.github_app_set("cached", 1, 2, private_key_pem().decode())
                client.github_app_set("fresh", 1, 2, private_key_pem().decode())
                url = git.url("private.git")
                client.git_clone(workspace, url, app="cached", path="warm-up")  # agent up, token cached
                token = api.issued[-1].token
                helper = '!f() { echo username=x; echo "password=$T"; }; f'
                raw, cached, fresh = [], [], []
                for n in range(args.clones):
                    argv = [
                        "git",
                        "-c",
                        f"credential.helper={helper}",
                        "clone",
                        "--quiet",
                        "--",
                        url,
                        f"/workspace/r{n}",
                    ]
                    result = client.exec(workspace, argv, env={"T": token, "GIT_TERMINAL_PROMPT": "0"})
                    assert result.exit_code == 0, result.stderr
                    raw.append(result.duration_ms / 1000)
                    cached.append(_timed(lambda n=n: client.git_clone(workspace, url, app="cached", path=f"c{n}")))
                    api.lifetime_s = 240
                    fresh.append(_timed(lambda n=n: client.git_clone(workspace, url, app="fresh", path=f"f{n}")))
                    api.lifetime_s = 3600
                print(table([
                    summary(BASELINE, raw, "ms"),
                    summary("git_clone, cached token", cached, "ms"),
                    summary("git_clone, token exchanged each time", fresh, "ms"),
                ], baseline=BASELINE))  # fmt: skip
                client.destroy(workspace)
            finally:
                git.stop()
                api.stop()


def _timed(call: object) -> float:
    import time

    began = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
