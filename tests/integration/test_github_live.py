"""The same path against real GitHub: opt-in, since this machine cannot reach github.com.

Set ``GITHUB_TEST_APP_ID``, ``GITHUB_TEST_APP_INSTALLATION_ID``, ``GITHUB_TEST_APP_KEY_FILE``
(the App's private key, PEM) and ``GITHUB_TEST_REPO`` (``owner/name`` of a private
repository the installation can read); ``GITHUB_TEST_API_URL`` for GitHub Enterprise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import MakeDockerRuntime

VARIABLES = ("GITHUB_TEST_APP_ID", "GITHUB_TEST_APP_INSTALLATION_ID", "GITHUB_TEST_APP_KEY_FILE", "GITHUB_TEST_REPO")

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        not all(os.environ.get(name) for name in VARIABLES),
        reason="live GitHub test: set " + ", ".join(VARIABLES) + " to run it (github.com is unreachable here)",
    ),
]


def test_a_private_repository_clones_from_real_github(make_docker_runtime: MakeDockerRuntime) -> None:
    runtime = make_docker_runtime(
        github_app_encryption_key=os.urandom(32),
        github_api_url=os.environ.get("GITHUB_TEST_API_URL", "https://api.github.com"),
    )
    with runtime.client(timeout_s=600) as client:
        client.github_app_set(
            "live",
            int(os.environ["GITHUB_TEST_APP_ID"]),
            int(os.environ["GITHUB_TEST_APP_INSTALLATION_ID"]),
            Path(os.environ["GITHUB_TEST_APP_KEY_FILE"]).read_text(),
        )
        workspace = client.create()
        try:
            result = client.git_clone(workspace.id, os.environ["GITHUB_TEST_REPO"], app="live", depth=1)
            assert len(result.commit) == 40
            [used] = client.github_audit()
            assert used.outcome == "ok"
        finally:
            client.destroy(workspace.id)
