"""Hostile clients against a running runtime, over real ZeroMQ: nothing they send goes unanswered or breaks it.

A `workspaces serve` (runc: isolation is not the point here) is fed through bare DEALER
sockets: random bytes, truncated and corrupted MessagePack, wrong types, several frames,
huge maps, deep nesting, wrong tokens, unknown ops, empty and duplicate ids; then every
op of ``runtime.messages.OPS`` with the edge values of every field of its args struct
(each bound of its rules, just inside and just outside, and the extremes of the wire
types), on a workspace that exists, one that was destroyed and ids that never were.

Each request whose id can be read gets exactly one reply carrying that id (a duplicate
gets at most one per copy sent), every other message exactly one reply with the id
``""``; every reply is an ok or error map whose code is in docs/protocol.md's list, and
none is ``internal``. Afterwards the server still answers ``ping`` and its state log and
Docker agree (tests/consistency.py). Hypothesis runs derandomized with a fixed number of
examples, so a run is the same run everywhere.
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runtime.messages import OPS, decode_request, encode
from runtime.wire.gateway import MAX_REQUEST_BYTES
from tests.conftest import ROOT
from tests.consistency import RawDealer, RuncServe, assert_log_and_docker_agree
from tests.github_standins import private_key_pem

pytestmark = [pytest.mark.docker, pytest.mark.long]

TOKEN = "fuzz-test-token-0123456789abcdef"
KEY = "5a" * 32
PEM = private_key_pem(2048).decode()
REPLY_WAIT_S = 60.0


def protocol_error_codes() -> set[str]:
    """The error codes of docs/protocol.md's section 5 table."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## 5. Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


CODES = protocol_error_codes()


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class Ref:
    """A value known only when the message is sent: ``live`` / ``gone`` workspace, ``running`` / ``ended`` process."""

    name: str


@dataclass(frozen=True)
class Deep:
    """An array nested ``depth`` levels deep (built as bytes: no encoder recurses that far).

    Depths stay clear of the interpreter's recursion limit (1000), where whether a decoder
    gives up depends on how deep the caller's own stack is: the test's is deeper than the
    server's, so it could not tell which id a reply will carry.
    """

    depth: int


@dataclass(frozen=True)
class Huge:
    """A map of ``size`` entries."""

    size: int


LIVE, GONE, RUNNING, ENDED = Ref("live"), Ref("gone"), Ref("running"), Ref("ended")
INTS = [0, 1, -1, 2, 63, 64, 65, 4095, 4096, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]
FLOATS = [0.0, -0.0, 5e-324, 1e-9, 0.0099, 0.01, 0.5, 1.0, 1024.0, 1024.5, 1e308, -1.0, math.inf, -math.inf, math.nan]
TEXTS = ["", " ", "\x00", "a\x00b", "\n", "é", "\u202e", "😀", "..", "../..", "-x", "a" * 64, "a" * 257, "a" * 5000]
BLOBS = [b"", b"\x00", b"x" * 4096, bytes(range(256)), b"\xff" * (1 << 20)]
ANY_VALUES = [None, True, 0, -1, 1.5, "", "x", b"", b"\x00", [], [1, "x"], {}, {"k": None}, Deep(64), Huge(5000)]
WORKSPACE_IDS = [LIVE, GONE, "ws_000000000000", "", "ws_", "WS_" + "0" * 12, "ws_../../x", "a" * 300]
PROCESS_IDS = [RUNNING, ENDED, "proc_000000000000", "", "proc_", "a" * 300]
SAFE = "x' \"$(reboot)`;|&\n\x01é"
COMMANDS: list[Any] = [
    ["true"], "true", ["echo", SAFE], f"printf %s {shlex.quote(SAFE)}", ["sh", "-c", "exit 3"], ["cat"],
    ["nonexistent-fuzz-program"], ["./"], ["/"], [], [""], ["", "x"], "", " ", "\n", ["true", "\x00"], ["\x00"],
    ["echo"] * 5000, "x" * 200_000, [1], [None], {"cmd": "true"},
]  # fmt: skip
"""Commands that end at once (no program here runs for long), and malformed ones."""
PATHS = ["fuzz/a.txt", "/workspace/fuzz/b", "a", ".", "..", "/", "/workspace", "/workspace/", "/etc/passwd",
         "../x", "a/../../b", "/proc/self/environ", "fuzz/\n", "é/😀", "a" * 255, "a" * 256, "a/" * 2048,
         *TEXTS[:5]]  # fmt: skip
REPOS = ["owner/name", "http://127.0.0.1:1/x.git", "https://127.0.0.1:1/a/b", "http://user:pw@127.0.0.1:1/x", "-o/x",
         "owner/", "/name", "file:///etc", "ssh://127.0.0.1:1/x", "a" * 3000]  # fmt: skip
NAMED: dict[str, list[Any]] = {
    "workspace_id": WORKSPACE_IDS,
    "process_id": PROCESS_IDS,
    "cmd": COMMANDS,
    "path": PATHS,
    "cwd": [None, "/workspace", "fuzz", "/", "/nonexistent", "/etc/passwd", *TEXTS[:6]],
    "repo": REPOS,
    "image": [None, "agent-workspaces/base:bookworm", "nope:latest", "UPPER/x", "a@sha256:" + "0" * 64, *TEXTS[:4]],
    "provider": [None, "gvisor", "GVISOR", "firecracker", "e2b", "kubernetes", *TEXTS[:3]],
    "memory": [None, "6M", "5M", "4G", "1.5g", "4GiB", "1T", "2T", "0", "-1M", "lots", 6 << 20, (6 << 20) - 1, 0, -1],
    "disk": [None, "1G", "64T", "65T", 1, 0, "x", 2**63 - 1],
    "private_key": [PEM, PEM.replace("A", "B", 3), "-----BEGIN PRIVATE KEY-----AAAA-----END PRIVATE KEY-----", ""],
    "key": [KEY, "00" * 32, "ab" * 31, "A" * 44, "", "zz" * 32],
    "message": [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"method": "notifications/x"},
        {},
        {"id": Deep(300)},
        {"id": Deep(5000)},
    ],
    "signal": ["TERM", "KILL", "SIGHUP", "hup", "STOP", "CONT", "0", "99", 0, 1, 9, 64, 65, -1, 2**64 - 1, ""],
    "name": ["fuzz-app", "fuzz-app-gone", "none", "a", "-a", "a" * 64, "a" * 65, *TEXTS[:3]],
    "app": [None, "fuzz-app", "fuzz-app-gone", "-a"],
    "ref": [None, "main", "v1.0", "-x", "a..b", "a" * 256, "~", "0" * 40],
}
"""Values for fields whose meaning matters (ids that exist or not, commands that must stay short)."""
MAX_EDGE_SIZE = 1 << 21


def _sized(base: Any, size: int) -> Any:
    if size > MAX_EDGE_SIZE:
        return None
    if base is str:
        return "a" * size
    if base is bytes:
        return b"a" * size
    if typing.get_origin(base) is dict or base is dict:
        return {f"k{n}": "v" for n in range(size)}
    return ["a"] * size


def edges(annotation: Any) -> list[Any]:
    """Edge values for a field: each bound of its rules just inside and outside it, and its wire type's extremes."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extras = typing.get_args(annotation)
        found: list[Any] = []
        for meta in extras:
            if not isinstance(meta, msgspec.Meta):
                continue
            for name in ("ge", "gt", "le", "lt"):
                bound = getattr(meta, name)
                if isinstance(bound, int):
                    found += [bound - 1, bound, bound + 1]
                elif isinstance(bound, float):
                    found += [math.nextafter(bound, -math.inf), bound, math.nextafter(bound, math.inf)]
            for name in ("min_length", "max_length"):
                bound = getattr(meta, name)
                if bound is not None:
                    found += [_sized(base, size) for size in (max(bound - 1, 0), bound, bound + 1)]
        return found + edges(base)
    if origin in (Union, types.UnionType):
        return [value for member in typing.get_args(annotation) for value in edges(member)]
    if origin is Literal:
        return [*typing.get_args(annotation), "", "nope"]
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        keys, values = edges(key_type), edges(value_type)
        return [{}, Huge(3000), *({key: "v"} for key in keys if isinstance(key, str)), *({"K": v} for v in values)]
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        return [[], ["a"] * 5000, *([item] for item in edges(item_type)[:8])]
    return {
        int: INTS, float: FLOATS, str: TEXTS, bytes: BLOBS, bool: [True, False], type(None): [None]
    }.get(annotation, ANY_VALUES)  # fmt: skip


def randoms(annotation: Any) -> st.SearchStrategy[Any]:
    """Random values of a field's wire type (its rules aside)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return randoms(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return st.one_of([randoms(member) for member in typing.get_args(annotation)])
    if origin is Literal:
        return st.sampled_from(typing.get_args(annotation)) | st.text(max_size=10)
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        return st.dictionaries(randoms(key_type), randoms(value_type), max_size=4)
    if origin is list:
        return st.lists(randoms(typing.get_args(annotation)[0]), max_size=4)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        int: st.integers(-(2**63), 2**64 - 1), float: st.floats(), str: st.text(max_size=40),
        bytes: st.binary(max_size=300), bool: st.booleans(), type(None): st.none(),
    }  # fmt: skip
    return scalars.get(annotation, st.sampled_from(ANY_VALUES))


def field_values(name: str, annotation: Any) -> list[Any]:
    """Every value the sweep sends in a field (named values first, then the type's edges), each once."""
    unique: dict[str, Any] = {}
    for value in [*NAMED.get(name, []), *([] if name in ("cmd", "repo") else edges(annotation))]:
        unique.setdefault(repr(value)[:200], value)
    return list(unique.values())


def field_strategy(name: str, annotation: Any) -> st.SearchStrategy[Any]:
    """Random values for a field: its sweep values, random ones of its type (none for commands), or any value."""
    picked = st.sampled_from(field_values(name, annotation))
    if name in ("cmd", "repo"):
        return picked
    return st.one_of(picked, picked, randoms(annotation), st.sampled_from(ANY_VALUES))


BASE: dict[str, dict[str, Any]] = {
    "create": {"labels": {"fuzz": "yes"}},
    "get": {"workspace_id": LIVE}, "exec_list": {"workspace_id": LIVE}, "destroy": {"workspace_id": GONE},
    "exec": {"workspace_id": LIVE, "cmd": ["true"]},
    "exec_stdin": {"workspace_id": LIVE, "process_id": RUNNING, "data": b"x\n"},
    "exec_kill": {"workspace_id": LIVE, "process_id": RUNNING, "signal": "CONT"},
    "exec_output": {"workspace_id": LIVE, "process_id": ENDED},
    "write_file": {"workspace_id": LIVE, "path": "fuzz/a.txt", "data": b"x"},
    "read_file": {"workspace_id": LIVE, "path": "fuzz/a.txt"},
    "extend": {"workspace_id": LIVE, "ttl_seconds": 3600.0},
    "github_app_set": {"name": "fuzz-app", "app_id": 1, "installation_id": 1, "private_key": PEM},
    "github_app_delete": {"name": "fuzz-app-gone"}, "github_key_rotate": {"key": KEY},
    "git_clone": {"workspace_id": LIVE, "repo": "http://127.0.0.1:1/x.git"},
    "mcp_call": {"name": "none", "message": {"jsonrpc": "2.0", "id": 1, "method": "ping"}},
}  # fmt: skip
"""Valid args of each op (others take none or only optional ones): the sweep changes one field at a time."""


def fields_of(op: str) -> list[msgspec.structs.FieldInfo]:
    return list(msgspec.structs.fields(OPS[op]))


# ---------------------------------------------------------------------- the runtime under fire


@dataclass
class Sent:
    """A request id in flight: how often it was sent, what was sent, how often it was answered."""

    frame: bytes
    op: str
    copies: int = 0
    replies: int = 0
    bodies: set[bytes] = field(default_factory=set)


class Fuzzed:
    """A runtime, a DEALER that fuzzes it, and the bookkeeping of what must be answered how often."""

    def __init__(self, serve: RuncServe) -> None:
        self.serve = serve
        self.wire = RawDealer(serve.endpoint, f"fuzz-{secrets.token_hex(4)}".encode())
        self.admin = serve.client(timeout_s=60)
        self.sent: dict[str, Sent] = {}
        self.anonymous_sent = self.anonymous_replies = 0
        self.messages = 0
        self.problems: list[str] = []
        self.created: set[str] = set()
        self._ids = iter(range(1, 1 << 62))
        self._prefix = secrets.token_hex(3)
        self.refs: dict[str, str] = {}
        gone = self.admin.create(labels={"fuzz": "gone"})
        self.admin.destroy(gone.id)
        self.refs["gone"] = gone.id
        self.refresh()

    def refresh(self) -> None:
        """Between batches: a ready ``live`` workspace with a running and an ended process; no fuzz leftovers."""
        for workspace_id in sorted(self.created):
            self.admin.destroy(workspace_id)
        self.created.clear()
        live = self.refs.get("live")
        if live is None or self.admin.get(live).state != "ready":
            self.refs["live"] = live = self.admin.create(labels={"fuzz": "live"}).id
            self.refs.pop("running", None)
            ended = self.admin.spawn(live, ["true"])
            self.refs["ended"] = ended.process_id
        running = self.refs.get("running")
        if running is None or not any(p.process_id == running and p.running for p in self.admin.exec_list(live)):
            self.refs["running"] = self.admin.spawn(live, ["cat"], stdin_open=True).process_id

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.refs[value.name]
        if isinstance(value, Deep):
            return msgspec.Raw(b"\x91" * value.depth + b"\xc0")
        if isinstance(value, Huge):
            return {f"k{n}": n for n in range(value.size)}
        if isinstance(value, dict):
            return {
                self.resolve(key) if isinstance(key, Ref) else key: self.resolve(item) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def send(self, frames: list[bytes]) -> None:
        """Send one message and note the reply it is owed (by its id, or an anonymous one)."""
        self.messages += 1
        self.wire.send(frames)
        request_id = ""
        if len(frames) == 1 and len(frames[0]) <= MAX_REQUEST_BYTES:
            try:  # the server's own envelope decoder, only to know which id the reply will carry
                request_id = decode_request(frames[0]).id
            except Exception:
                request_id = ""
        if not request_id:
            self.anonymous_sent += 1
            return
        sent = self.sent.setdefault(request_id, Sent(frames[0], decode_request(frames[0]).op))
        sent.copies += 1

    def request(self, op: Any, args: Any, *, request_id: str | None = None, token: Any = TOKEN) -> str:
        """Send one well-framed request (``args`` may be anything); return its id."""
        request_id = self.new_id() if request_id is None else request_id
        self.send([encode({"id": request_id, "op": op, "token": token, "args": self.resolve(args)})])
        return request_id

    def collect(self) -> None:
        """Take replies until every message sent so far has at least its one; check each as it comes."""
        deadline = time.monotonic() + REPLY_WAIT_S
        while self.anonymous_replies < self.anonymous_sent or any(s.replies == 0 for s in self.sent.values()):
            remaining = deadline - time.monotonic()
            missing = [rid for rid, s in self.sent.items() if s.replies == 0][:5]
            assert remaining > 0, f"no reply within {REPLY_WAIT_S} s to {missing} or anonymous messages"
            got = self.wire.recv(remaining)
            if got is not None:
                self.take(*got)

    def take(self, frame: bytes, reply: Any) -> None:
        request_id = reply.get("id") if isinstance(reply, dict) else None
        problem = well_formed(reply)
        if request_id == "":
            self.anonymous_replies += 1
        elif isinstance(request_id, str) and request_id in self.sent:
            sent = self.sent[request_id]
            sent.replies += 1
            sent.bodies.add(frame)
            if sent.replies > sent.copies:
                problem = problem or f"reply {sent.replies} to a request sent {sent.copies} time(s)"
            if sent.op == "create" and reply.get("ok") and isinstance(reply.get("result"), dict):
                self.created.add(reply["result"]["id"])
        else:
            problem = problem or "a reply to no request sent"
        if problem:
            request = self.sent.get(request_id) if isinstance(request_id, str) else None
            shown = msgspec.msgpack.decode(request.frame) if request is not None else "(anonymous)"
            self.problems.append(f"{problem}: {str(reply)[:400]} <- {str(shown)[:400]}")

    def drain(self) -> None:
        """Take every reply still coming: a ping sent last is answered after every reply owed before it."""
        self.collect()
        last = self.request("ping", {})
        deadline = time.monotonic() + REPLY_WAIT_S
        while self.sent[last].replies == 0:
            got = self.wire.recv(deadline - time.monotonic())
            assert got is not None, "the final ping was not answered"
            self.take(*got)
        while (got := self.wire.recv(1.0)) is not None:  # late duplicates, if any, come now
            self.take(*got)

    def verdict(self) -> None:
        self.drain()
        assert not self.problems, "\n".join(self.problems[:20])
        once = [rid for rid, s in self.sent.items() if s.copies == 1 and s.replies != 1]
        assert not once, f"requests sent once, not answered once: {once[:10]}"
        assert self.anonymous_replies == self.anonymous_sent, "messages without a readable id, not answered once each"

    def close(self) -> None:
        self.wire.close()
        self.admin.close()


def well_formed(reply: Any) -> str | None:
    """What is wrong with a reply, if anything: not an ok/error map, an unknown code, or ``internal``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), str) or not isinstance(reply.get("ok"), bool):
        return "not a reply map"
    if reply["ok"]:
        return None if "result" in reply else "ok without a result"
    error = reply.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return "error without a message"
    if not isinstance(error.get("retryable"), bool) or error.get("code") not in CODES:
        return f"error code {error.get('code')!r} is not in docs/protocol.md"
    return "an internal error" if error["code"] == "internal" else None


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Fuzzed]:
    serve = RuncServe(
        tmp_path_factory.mktemp("fuzz") / "state",
        docker_client,
        TOKEN,
        WORKSPACE_MAX_CONCURRENT="6",
        GITHUB_APP_ENCRYPTION_KEY=KEY,
        GITHUB_API_URL="http://127.0.0.1:1",
    )
    serve.start()
    fuzz: Fuzzed | None = None
    try:
        fuzz = Fuzzed(serve)
        yield fuzz
        assert fuzz.admin.ping()["ready"]
        assert "Traceback" not in serve.log, serve.log[-5000:]
        for record in assert_log_and_docker_agree(fuzz.admin, docker_client, serve.instance).values():
            fuzz.admin.destroy(record.id)
        print(f"fuzzed {fuzz.messages} messages")
    finally:
        if fuzz is not None:
            fuzz.close()
        leaked = serve.close()
    assert not leaked, f"left behind: {leaked}"


FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# ---------------------------------------------------------------------- (a) random frames

ID, MISSING, DUP = Ref("id"), Ref("missing"), Ref("dup")
ENVELOPE_KEYS = ("id", "op", "token", "args")
ANY = st.sampled_from(ANY_VALUES) | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20)
ENVELOPES = st.fixed_dictionaries({
    "id": st.sampled_from([ID, ID, ID, "", MISSING, "a" * 257]) | ANY,
    "op": st.sampled_from([*(op for op in OPS if op != "create"), "", "nope", "PING", "ping\x00", MISSING]) | ANY,
    "token": st.sampled_from([TOKEN, TOKEN, "", TOKEN + " ", TOKEN[:-1], TOKEN.upper(), "x" * 32, MISSING]) | ANY,
    "args": st.sampled_from([{}, {}, MISSING, None, [], "x", 1, b"", {"unknown": 1}, Huge(100_000), Huge(10)])
    | st.builds(Deep, st.sampled_from([10, 500, 5000, 100_000]))
    | st.dictionaries(st.text(max_size=8), ANY, max_size=4),
    "extra": st.dictionaries(
        st.text(max_size=8) | st.integers(0, 9), ANY | st.builds(Deep, st.just(100_000)), max_size=2
    ),
})  # fmt: skip
MANGLES = st.one_of(
    st.just(("none",)),
    st.tuples(st.just("truncate"), st.integers(0, 200)),
    st.tuples(st.just("flip"), st.integers(0, 200), st.integers(0, 255)),
    st.tuples(st.just("frames"), st.lists(st.binary(max_size=30), min_size=1, max_size=3), st.booleans()),
)
FRAME_CASES = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("envelope"), ENVELOPES, MANGLES),
    st.tuples(st.just("envelope"), ENVELOPES, st.just(("none",))),
    st.just(("dup",)),
)


def build_frames(fuzz: Fuzzed, case: tuple[Any, ...], request_id: str) -> list[bytes]:
    if case[0] == "bytes":
        return [case[1]]
    _, envelope, mangle = case
    values = {key: (request_id if value == ID else value) for key, value in envelope.items() if key != "extra"}
    message = {key: fuzz.resolve(value) for key, value in values.items() if value != MISSING}
    message.update({key: fuzz.resolve(value) for key, value in envelope["extra"].items() if key not in ENVELOPE_KEYS})
    frame = encode(message)
    if mangle[0] == "truncate":
        return [frame[: mangle[1] % max(len(frame), 1)]]
    if mangle[0] == "flip":
        at = mangle[1] % len(frame)
        return [frame[:at] + bytes([mangle[2]]) + frame[at + 1 :]]
    if mangle[0] == "frames":
        return [*mangle[1], frame] if mangle[2] else [frame, *mangle[1]]
    return [frame]


@FUZZ_SETTINGS
@given(batch=st.lists(FRAME_CASES, min_size=1, max_size=30))
def fuzz_frames(fuzz: Fuzzed, batch: list[tuple[Any, ...]]) -> None:
    previous: list[bytes] | None = None
    for case in batch:
        frames = previous if case[0] == "dup" and previous is not None else None
        if frames is None:
            frames = build_frames(fuzz, case, fuzz.new_id()) if case[0] != "dup" else [b""]
        fuzz.send(frames)
        previous = frames
    fuzz.collect()
    assert not fuzz.problems, "\n".join(fuzz.problems[:20])
    fuzz.refresh()


def test_random_frames_each_get_one_well_formed_reply_and_the_server_keeps_serving(fuzzed: Fuzzed) -> None:
    before = fuzzed.messages
    fuzz_frames(fuzzed)
    fuzzed.verdict()
    print(f"random frames: {fuzzed.messages - before} messages")


def test_a_frame_over_the_size_limit_is_refused_with_one_bad_request(fuzzed: Fuzzed) -> None:
    before = len(fuzzed.problems)
    fuzzed.send([b"\x80" * (MAX_REQUEST_BYTES + 1)])
    fuzzed.verdict()
    assert len(fuzzed.problems) == before and fuzzed.admin.ping()["ready"]


def test_a_str_that_is_not_utf8_in_the_envelope_or_the_args_is_a_bad_request(fuzzed: Fuzzed) -> None:
    not_utf8 = b"\xa2\xb2\xff"  # a 2-byte str that is no UTF-8
    live = fuzzed.refs["live"].encode()
    fuzzed.send([b"\x83\xa2id" + not_utf8 + b"\xa2op\xa4ping\xa5token" + encode(TOKEN)])
    rid = encode(fuzzed.new_id())
    fuzzed.send(
        [b"\x84\xa2id" + rid + b"\xa2op\xa4list\xa5token" + encode(TOKEN) + b"\xa4args\x81\xa5state" + not_utf8]
    )
    rid = encode(fuzzed.new_id())
    args = b"\x82\xacworkspace_id" + encode(live.decode()) + b"\xa3cmd\x91" + not_utf8
    fuzzed.send([b"\x84\xa2id" + rid + b"\xa2op\xa4exec\xa5token" + encode(TOKEN) + b"\xa4args" + args])
    fuzzed.verdict()


# ---------------------------------------------------------------------- (b) every op, edge values


def sweep_requests() -> Iterator[tuple[str, Any]]:
    """Each op's valid args with one field changed to each of its edge values; fields missing; args not a map."""
    for op in OPS:
        base = BASE.get(op, {})
        yield op, base
        for info in fields_of(op):
            for value in field_values(info.name, info.type):
                yield op, {**base, info.name: value}
            if info.name in base:
                yield op, {key: value for key, value in base.items() if key != info.name}
        yield op, {**base, "unknown_field": 1}
        for odd in (None, [], 1, "x", b"", Deep(2000), Huge(20_000)):
            yield op, odd


def test_edge_values_in_every_field_of_every_op_are_answered_and_refused_cleanly(fuzzed: Fuzzed) -> None:
    before = fuzzed.messages
    batch: list[tuple[str, Any]] = []
    requests = list(sweep_requests())
    for number, (op, args) in enumerate(requests, 1):
        batch.append((op, args))
        # Creates in small batches: each may make a workspace, and the refresh removes them.
        if len(batch) == 40 or (op == "create" and len(batch) == 4) or number == len(requests):
            for op_, args_ in batch:
                fuzzed.request(op_, args_)
            fuzzed.collect()
            assert not fuzzed.problems, "\n".join(fuzzed.problems[:20])
            fuzzed.refresh()
            batch = []
    fuzzed.verdict()
    print(f"edge values: {fuzzed.messages - before} messages over {len(OPS)} ops")


@st.composite
def op_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    op = draw(st.sampled_from(list(OPS)))
    args: dict[str, Any] = {}
    for info in fields_of(op):
        wanted = draw(st.integers(0, 19)) < (19 if info.required else 10)
        if wanted:
            args[info.name] = draw(field_strategy(info.name, info.type))
    if draw(st.integers(0, 19)) == 0:
        args[draw(st.text(max_size=10))] = draw(ANY)
    return op, args


@FUZZ_SETTINGS
@given(batch=st.lists(st.tuples(op_requests(), st.integers(0, 9)), min_size=1, max_size=20))
def fuzz_ops(fuzz: Fuzzed, batch: list[tuple[tuple[str, dict[str, Any]], int]]) -> None:
    for (op, args), repeat in batch:
        request_id = fuzz.request(op, args)
        if repeat == 0:  # the same request again, at once: not run twice, answered at most once per copy
            fuzz.request(op, args, request_id=request_id)
    fuzz.collect()
    assert not fuzz.problems, "\n".join(fuzz.problems[:20])
    fuzz.refresh()


def test_random_requests_for_every_op_each_get_one_well_formed_reply(fuzzed: Fuzzed) -> None:
    before = fuzzed.messages
    fuzz_ops(fuzzed)
    fuzzed.verdict()
    kept = [s for s in fuzzed.sent.values() if s.copies > 1 and s.op in ("exec", "write_file", "destroy")]
    assert all(len(s.bodies) == 1 for s in kept if s.replies > 1), "a kept reply differed from the first"
    print(f"random requests: {fuzzed.messages - before} messages")


def test_requests_with_one_id_resent_get_at_most_one_reply_per_copy_and_run_once(fuzzed: Fuzzed) -> None:
    live = fuzzed.refs["live"]
    request_id = fuzzed.new_id()
    script = f"echo run >> /workspace/fuzz-runs-{request_id}"
    for _ in range(5):
        fuzzed.request("exec", {"workspace_id": live, "cmd": ["sh", "-c", script]}, request_id=request_id)
    fuzzed.verdict()
    sent = fuzzed.sent[request_id]
    assert 1 <= sent.replies <= 5 and len(sent.bodies) == 1
    assert fuzzed.admin.read_file(live, f"fuzz-runs-{request_id}") == b"run\n"


def test_afterwards_the_runtime_serves_and_its_log_and_docker_agree(fuzzed: Fuzzed, docker_client: Any) -> None:
    fuzzed.verdict()
    assert fuzzed.admin.ping()["ready"]
    assert fuzzed.admin.exec(fuzzed.refs["live"], ["echo", "still"]).stdout == b"still\n"
    listed = assert_log_and_docker_agree(fuzzed.admin, docker_client, fuzzed.serve.instance)
    assert fuzzed.refs["live"] in listed
    print(f"fuzzed {fuzzed.messages} messages in all, {len(fuzzed.sent)} ids")
