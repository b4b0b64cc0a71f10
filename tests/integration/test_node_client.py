"""The Node.js client (clients/node) against a real runtime: its own tests, run by node.

`workspaces serve` runs as its own process; `node --test` on clients/node/test gets its
endpoints and token through WORKSPACES_ENDPOINT, WORKSPACES_EVENTS_ENDPOINT and
WORKSPACES_TOKEN. The Node tests destroy what they create; this test also checks that no
container was left behind. A second runtime listens on every interface with CURVE: a node
script with a key from `workspaces keys new` gets replies and events, one without a listed
key gets neither.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from runtime.wire.keys import load_key_pair
from tests.conftest import ROOT, remove_leftovers
from tests.serving import WORKSPACES, Server, cli, free_port, serve_env

pytestmark = pytest.mark.docker

PACKAGE = ROOT / "clients" / "node"
NODE = shutil.which("node")
NPM = shutil.which("npm")
NEEDS_NODE = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are needed on PATH for the Node.js client"
)


def _installed() -> bool:
    """Whether node_modules is at least as new as package-lock.json (npm ci writes node_modules/.package-lock.json)."""
    marker = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def _npm_ci() -> None:
    """Install the package's dependencies exactly as locked, once (idempotent, safe across processes)."""
    lock_path = Path(tempfile.gettempdir()) / "agent-workspaces-node-client-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return
        assert NPM is not None
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"npm ci failed in {PACKAGE}:\n{done.stdout}\n{done.stderr}"


@NEEDS_NODE
def test_the_node_client_passes_its_tests_against_a_live_runtime(tmp_path: Path, docker_client: Any) -> None:
    _npm_ci()
    token = secrets.token_urlsafe(24)
    env = serve_env(
        tmp_path / "state",
        WORKSPACE_AUTH_TOKEN=token,
        WORKSPACE_MCP_CONFIG=str(tmp_path / "mcp-none.toml"),  # no MCP servers of the checkout's own
    )
    server = Server(env)
    try:
        server.wait_ready()
        node_env = {
            **os.environ,
            "WORKSPACES_ENDPOINT": env["WORKSPACE_ZMQ_ENDPOINT"],
            "WORKSPACES_EVENTS_ENDPOINT": env["WORKSPACE_ZMQ_EVENTS_ENDPOINT"],
            "WORKSPACES_TOKEN": token,
        }
        assert NODE is not None
        # The files by name: node 18 and 20 take a directory, 22 and later take globs.
        tests = sorted(str(path) for path in (PACKAGE / "test").glob("*.test.js"))
        ran = subprocess.run(
            [NODE, "--test", "--test-reporter=tap", *tests],
            cwd=PACKAGE, env=node_env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        output = ran.stdout + ran.stderr
        summary = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", ran.stdout, re.MULTILINE))
        print("node --test:", " ".join(f"{key} {value}" for key, value in summary.items()))
        assert ran.returncode == 0, f"node --test failed:\n{output}\n--- runtime log ---\n{server.log}"
        assert summary.get("fail") == "0" and summary.get("skipped") == "0", output
        assert "# SKIP" not in ran.stdout, f"the live tests did not run:\n{output}"  # a skipped suite is not counted
        assert int(summary.get("pass", "0")) > 0, output
    finally:
        server.stop()
        leaked = remove_leftovers(docker_client, server.instance())
    assert not leaked, f"the Node.js client's tests left these behind: {leaked}"


# A remote client's whole round: configured by the environment only (WORKSPACE_ZMQ_* and
# WORKSPACE_AUTH_TOKEN, as on a machine without the runtime's state directory), it pings, lists
# providers and workspaces, and sees its own workspace's events. With CURVE_REFUSED it tries a
# client with the key file named there and one with no key at all, which must both time out.
CURVE_SCRIPT = r"""
const { Client, Timeout } = await import(process.env.CLIENT_MODULE);

async function nextWithin(iterator, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    const { value, done } = await Promise.race([iterator.next(), timeout]);
    if (done) throw new Error(`${what}: the stream ended`);
    return value;
  } finally {
    clearTimeout(timer);
  }
}

async function admitted() {
  const client = new Client({ timeoutMs: 120_000 });
  const out = { curve: client.curve, serverKey: client.serverKey, clientPublicKey: client.clientPublicKey };
  const events = client.events({ topics: ["workspace"] });
  try {
    out.ping = await client.ping();
    out.providers = (await client.providers()).map((provider) => provider.name);
    out.welcomed = await events.ready;
    const workspace = await client.create({ memory: "256M", cpu: 1, labels: { suite: "node-curve" } });
    out.workspace = workspace.id;
    out.listed = (await client.list({ labels: { suite: "node-curve" } })).map((record) => record.id);
    await client.destroy(workspace.id);
    out.states = [];
    while (!out.states.includes("destroyed")) {
      const event = await nextWithin(events, 60_000, "the workspace's events");
      if (event.type === "workspace.state" && event.workspace_id === workspace.id) out.states.push(event.state);
    }
  } finally {
    events.close();
    client.close();
  }
  return out;
}

async function refused(options) {
  const client = new Client({ timeoutMs: 3_000, joinTimeoutMs: 3_000, ...options });
  const events = client.events();
  const out = { curve: client.curve };
  try {
    out.welcomed = await events.ready;
    try {
      out.ping = await client.ping();
    } catch (error) {
      out.ping = error instanceof Timeout ? "Timeout" : String(error);
    }
  } finally {
    events.close();
    client.close();
  }
  return out;
}

const stranger = process.env.CURVE_REFUSED;
const result = stranger
  ? {
      unlisted: await refused({ clientKeyFile: stranger }),
      unkeyed: await refused({ serverKey: null, clientKeyFile: null }),
    }
  : await admitted();
console.log(JSON.stringify(result));
"""


def _run_node(script: Path, env: dict[str, str]) -> dict[str, Any]:
    assert NODE is not None
    ran = subprocess.run([NODE, str(script)], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=300,
                         check=False)  # fmt: skip
    assert ran.returncode == 0, f"node failed:\n{ran.stdout}\n{ran.stderr}"
    result: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
    return result


@NEEDS_NODE
def test_the_node_client_reaches_a_curve_runtime_on_every_interface_with_a_listed_key_only(
    tmp_path: Path, docker_client: Any
) -> None:
    _npm_ci()
    state = tmp_path / "state"
    token = secrets.token_urlsafe(24)
    request_port, events_port = free_port(), free_port()
    env = serve_env(
        state,
        WORKSPACE_AUTH_TOKEN=token,
        WORKSPACE_MCP_CONFIG=str(tmp_path / "mcp-none.toml"),
        WORKSPACE_ZMQ_ENDPOINT=f"tcp://0.0.0.0:{request_port}",
        WORKSPACE_ZMQ_EVENTS_ENDPOINT=f"tcp://0.0.0.0:{events_port}",
        WORKSPACE_ZMQ_CURVE="true",
    )
    # DEBUG: the refusal of each socket is logged, not only the first one a minute per address.
    server = Server(env, [*WORKSPACES, "--log-level", "DEBUG", "serve"])
    try:
        server.wait_ready()
        # Keys made while the runtime runs: read at the next handshake. One stays listed; the
        # other is issued outside the state dir, then removed, so its file is all a client has.
        made = cli(env, "keys", "new", "node-client")
        assert made.returncode == 0, made.stderr
        assert cli(env, "keys", "new", "node-stranger", "--out", str(tmp_path / "stranger")).returncode == 0
        assert cli(env, "keys", "remove", "node-stranger").returncode == 0
        listed = cli(env, "keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        keys = json.loads(listed.stdout)
        assert set(keys["clients"]) == {"node-client"}
        key_file = state / "curve" / "issued" / "node-client.key_secret"
        stranger_file = tmp_path / "stranger" / "node-stranger.key_secret"
        script = tmp_path / "curve_check.mjs"
        script.write_text(CURVE_SCRIPT)
        client_env = {name: value for name, value in os.environ.items() if not name.startswith("WORKSPACE_")}
        client_env |= {
            "CLIENT_MODULE": (PACKAGE / "src" / "index.js").as_uri(),
            "WORKSPACE_AUTH_TOKEN": token,
            "WORKSPACE_ZMQ_ENDPOINT": f"tcp://127.0.0.1:{request_port}",
            "WORKSPACE_ZMQ_EVENTS_ENDPOINT": f"tcp://127.0.0.1:{events_port}",
            "WORKSPACE_ZMQ_SERVER_KEY": keys["server"],
            "WORKSPACE_ZMQ_CLIENT_KEY": str(key_file),
            "WORKSPACE_STATE_DIR": str(tmp_path / "client-state"),  # not the runtime's: the keys come from above
        }

        result = _run_node(script, client_env)
        assert result["curve"] is True
        assert (result["serverKey"], result["clientPublicKey"]) == (keys["server"], keys["clients"]["node-client"])
        assert result["ping"]["ready"] is True
        assert result["providers"], result
        assert result["welcomed"] is True, "the event socket admitted the key (its welcome came)"
        assert result["listed"] == [result["workspace"]]
        assert result["states"][-1] == "destroyed" and "ready" in result["states"], result

        refused = _run_node(script, {**client_env, "CURVE_REFUSED": str(stranger_file)})
        assert refused == {
            "unlisted": {"curve": True, "welcomed": False, "ping": "Timeout"},
            "unkeyed": {"curve": False, "welcomed": False, "ping": "Timeout"},
        }
    finally:
        stopped = server.stop()
        leaked = remove_leftovers(docker_client, server.instance())
    assert stopped == 0, server.log
    assert not leaked, f"the CURVE round left these behind: {leaked}"
    stranger_key = load_key_pair(stranger_file).public.decode()
    for what in ("client", "subscriber"):
        assert f"refused a {what} from 127.0.0.1 (CURVE): client key {stranger_key} is not listed" in server.log
    assert token not in server.log
