"""Value rules: what each accepts, what it refuses, and the sentence a client reads."""

from __future__ import annotations

import math
import re
import signal as signals
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runtime.errors import BadRequest
from runtime.messages import (
    Command,
    CreateArgs,
    ExecArgs,
    RuleBroken,
    WriteFileArgs,
    broken_rule,
    decode_args,
    encode,
    invalid_args,
    signal_number,
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL = "is not valid: keys are 1-63 of [A-Za-z0-9._/-], values at most 256 characters"
ENV = "is not valid: expected 1 to 255 letters, digits and _ (not first a digit)"
TTL = "must be > 0 and at most 315360000 (10 years)"
IMAGE = (
    "is not a valid image name: expected a Docker reference such as busybox, ghcr.io/owner/name:tag or "
    "name@sha256:<hex> (repository in lower case, at most 255 characters)"
)
NUL = "is not valid: at most 131072 characters, no NUL byte"
ENV_NAMES = st.from_regex(ENV_NAME, fullmatch=True)
# Arbitrary text, and valid names spoiled by one character (a digit first, a space, a newline...).
NEAR_ENV_NAMES = st.text(max_size=12) | st.builds(
    lambda head, odd, tail: head + odd + tail,
    ENV_NAMES | st.just(""),
    st.sampled_from("\n -=0.\x00") | st.characters(),
    st.just("") | ENV_NAMES,
)


def quoted(value: str) -> str:
    """``value`` as a refusal quotes it: whole, or its first 64 characters and its length."""
    return repr(value) if len(value) <= 64 else f"{value[:64]!r}... ({len(value)} characters)"


def decoded(op: str, args: dict[str, Any]) -> Any:
    """``args`` decoded for ``op``, as the gateway decodes them (fails the test if refused)."""
    return decode_args(op, msgspec.Raw(encode(args)))


def refusal(op: str, args: Any) -> str:
    """What the client reads when ``args`` are refused for ``op`` (fails the test if accepted)."""
    raw = msgspec.Raw(encode(args))
    with pytest.raises(msgspec.DecodeError) as caught:
        decode_args(op, raw)
    return invalid_args(op, raw, caught.value)


def exec_args(**changes: Any) -> dict[str, Any]:
    return {"workspace_id": "ws_1", "cmd": ["true"], **changes}


def write_args(**changes: Any) -> dict[str, Any]:
    return {"workspace_id": "ws_1", "path": "a.txt", "data": b"x", **changes}


# ---------------------------------------------------------------------- each rule


@pytest.mark.parametrize("cpu", [0.01, 0.5, 1, 2.5, 1024])
def test_cpu_between_a_hundredth_and_1024_cores_is_accepted(cpu: float) -> None:
    assert decoded("create", {"cpu": cpu}).cpu == cpu


@pytest.mark.parametrize(
    ("cpu", "shown"), [(0, "0"), (0.009, "0.009"), (-1, "-1"), (1024.5, "1024.5"), (2000, "2000"), (math.nan, "nan")]
)
def test_cpu_out_of_range_is_refused_naming_the_range(cpu: float, shown: str) -> None:
    assert refusal("create", {"cpu": cpu}) == (
        f"invalid args for create: cpu={shown} is out of range: expected 0.01 to 1024 cores"
    )


@pytest.mark.parametrize("name", ["A", "_", "PATH", "my_var_2", "_9", "z" * 200])
def test_env_names_of_letters_digits_and_underscores_are_accepted(name: str) -> None:
    assert decoded("create", {"env": {name: "v"}}).env == {name: "v"}


@pytest.mark.parametrize("name", ["1BAD", "", "A B", "A-B", "A=B", "É", "A.B", " A"])
def test_other_env_names_are_refused_quoting_the_name(name: str) -> None:
    assert refusal("create", {"env": {name: "v"}}) == f"invalid args for create: env name {name!r} {ENV}"


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("create", {"env": {"A\n": "v"}}),
        ("create", {"image": "busybox\n"}),
        ("create", {"labels": {"team\n": "a"}}),
    ],
)
def test_a_trailing_newline_does_not_slip_past_a_pattern(op: str, args: dict[str, Any]) -> None:
    assert "\\n'" in refusal(op, args)  # refused, quoting the value with its newline


@pytest.mark.parametrize("value", ["", "plain", "a\nb", "tab\there", "ünïcode", "=" * 1000])
def test_env_values_without_nul_bytes_are_accepted(value: str) -> None:
    assert decoded("exec", exec_args(env={"A": value})).env == {"A": value}


def test_an_env_value_with_a_nul_byte_is_refused_naming_its_variable() -> None:
    assert refusal("create", {"env": {"A": "a\x00b"}}) == f"invalid args for create: env value of A {NUL}"
    assert refusal("exec", exec_args(env={"OK": "1", "B": "\x00"})) == f"invalid args for exec: env value of B {NUL}"


@pytest.mark.parametrize("key", ["a", "team", "app.kubernetes.io/name", "x-y_z", "9", "A" * 63])
def test_label_keys_of_one_to_63_allowed_characters_are_accepted(key: str) -> None:
    assert decoded("create", {"labels": {key: "v"}}).labels == {key: "v"}


@pytest.mark.parametrize("key", ["", "-a", ".a", "/a", "_a", "a b", "a:b", "é", "A" * 64])
def test_other_label_keys_are_refused_quoting_the_key(key: str) -> None:
    assert refusal("create", {"labels": {key: "v"}}) == f"invalid args for create: label {key!r} {LABEL}"


def test_label_values_up_to_256_characters_are_accepted_and_longer_ones_refused_naming_the_key() -> None:
    assert decoded("create", {"labels": {"k": "v" * 256, "e": ""}}).labels == {"k": "v" * 256, "e": ""}
    assert refusal("create", {"labels": {"k": "v" * 257}}) == f"invalid args for create: label 'k' {LABEL}"


@pytest.mark.parametrize("ttl", [1e-9, 0.5, 1, 86400, 315360000])
def test_positive_ttls_are_accepted(ttl: float) -> None:
    assert decoded("create", {"ttl_seconds": ttl}).ttl_seconds == ttl
    assert decoded("extend", {"workspace_id": "ws_1", "ttl_seconds": ttl}).ttl_seconds == ttl


@pytest.mark.parametrize(("ttl", "shown"), [(0, "0"), (-5, "-5"), (-0.5, "-0.5"), (0.0, "0.0"), (math.nan, "nan")])
def test_a_ttl_that_is_not_positive_is_refused(ttl: float, shown: str) -> None:
    assert refusal("create", {"ttl_seconds": ttl}) == f"invalid args for create: ttl_seconds={shown} {TTL}"
    assert refusal("extend", {"workspace_id": "ws_1", "ttl_seconds": ttl}) == (
        f"invalid args for extend: ttl_seconds={shown} {TTL}"
    )


def test_an_exec_timeout_follows_the_same_seconds_rule() -> None:
    assert decoded("exec", exec_args(timeout_s=0.25)).timeout_s == 0.25
    assert refusal("exec", exec_args(timeout_s=0)) == (
        "invalid args for exec: timeout_s=0 must be > 0 and at most 604800 (7 days)"
    )


@pytest.mark.parametrize("mode", [0, 0o600, 0o755, 0o4755, 0o7777])
def test_file_modes_from_0_to_0o7777_are_accepted(mode: int) -> None:
    assert decoded("write_file", write_args(mode=mode)).mode == mode


@pytest.mark.parametrize("mode", [-1, 0o10000, 99999])
def test_other_file_modes_are_refused(mode: int) -> None:
    assert refusal("write_file", write_args(mode=mode)) == (
        f"invalid args for write_file: mode={mode} is not a file mode (0 to 0o7777)"
    )


@pytest.mark.parametrize(
    "image", ["busybox", "agent-workspaces/base:bookworm", "ghcr.io/o/r@sha256:" + "0" * 64, "x" * 255]
)
def test_image_references_up_to_255_characters_are_accepted(image: str) -> None:
    assert decoded("create", {"image": image}).image == image


@pytest.mark.parametrize("image", ["a b", "", " busybox", "busybox ", "a\tb", "x" * 256])
def test_other_image_names_are_refused(image: str) -> None:
    assert refusal("create", {"image": image}) == f"invalid args for create: image={quoted(image)} {IMAGE}"


@pytest.mark.parametrize("cmd", [[], "", "  ", "\t\n", ["", "x"], [""]])
def test_an_empty_command_is_refused(cmd: Any) -> None:
    assert refusal("exec", exec_args(cmd=cmd)) == "invalid args for exec: cmd is empty"


@pytest.mark.parametrize("cmd", [["ls", ""], ["ls"], "true", " x ", ["sh", "-c", ""]])
def test_a_command_whose_program_is_named_is_accepted_even_with_empty_arguments(cmd: Any) -> None:
    assert decoded("exec", exec_args(cmd=cmd)).cmd == cmd


# ---------------------------------------------------------------------- broken_rule


def test_broken_rule_words_a_decoded_struct_that_breaks_a_rule() -> None:
    # Structs are not checked when built in Python, only when decoded or held to the rules.
    assert broken_rule(CreateArgs, CreateArgs(cpu=0)) == "cpu=0 is out of range: expected 0.01 to 1024 cores"
    assert broken_rule(ExecArgs, ExecArgs(workspace_id="ws_1", cmd=[])) == "cmd is empty"
    assert broken_rule(WriteFileArgs, WriteFileArgs(workspace_id="ws_1", path="p", data=b"", mode=-1)) == (
        "mode=-1 is not a file mode (0 to 0o7777)"
    )
    assert broken_rule(CreateArgs, CreateArgs(cpu=1, env={"A": "1"}, labels={"k": "v"})) is None


def test_broken_rule_words_a_raw_map_and_ignores_fields_it_does_not_know() -> None:
    assert broken_rule(CreateArgs, {"ttl_seconds": -1, "colour": "red"}) == f"ttl_seconds=-1 {TTL}"
    assert broken_rule(CreateArgs, {"env": {"A": "x\x00"}}) == f"env value of A {NUL}"
    assert broken_rule(CreateArgs, {"labels": {"k": "v"}, "memory": "4G"}) is None
    assert broken_rule(CreateArgs, {}) is None


def test_broken_rule_names_the_first_broken_field_in_declaration_order() -> None:
    first = f"image='a b' {IMAGE}"
    assert broken_rule(CreateArgs, {"cpu": 0, "image": "a b"}) == first
    assert broken_rule(CreateArgs, {"image": "a b", "cpu": 0}) == first


def test_broken_rule_leaves_what_is_not_a_map_or_not_the_rules_type_to_msgspec() -> None:
    assert broken_rule(CreateArgs, [1, 2]) is None
    assert broken_rule(CreateArgs, "cpu=0") is None
    assert broken_rule(CreateArgs, {"cpu": True}) is None  # a bool is no number here
    assert broken_rule(CreateArgs, {"cpu": "two"}) is None
    assert broken_rule(CreateArgs, {"cpu": None}) is None


def test_the_rules_of_run_options_hold_for_a_command_too() -> None:
    assert broken_rule(Command, Command(argv=["x"], env={"1A": "v"})) == f"env name '1A' {ENV}"
    assert broken_rule(Command, Command(argv=["x"], timeout_s=-2.5)) == (
        "timeout_s=-2.5 must be > 0 and at most 604800 (7 days)"
    )
    assert broken_rule(Command, Command(argv=["x"], env={"A": "1"}, timeout_s=1)) is None


# ---------------------------------------------------------------------- signal_number


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("TERM", 15), ("term", 15), ("SIGTERM", 15), ("SigKill", 9), ("KILL", 9), ("INT", 2), ("HUP", 1),
        ("sigusr1", int(signals.SIGUSR1)), (15, 15), ("15", 15), ("9", 9), (1, 1), (signals.NSIG - 1, signals.NSIG - 1),
    ],
)  # fmt: skip
def test_signals_are_taken_by_name_with_or_without_sig_or_by_number(name: str | int, number: int) -> None:
    assert signal_number(name) == number


@pytest.mark.parametrize("number", [0, -9, signals.NSIG, "0", str(signals.NSIG), 1000])
def test_a_number_that_is_no_signal_is_refused_with_the_range(number: str | int) -> None:
    with pytest.raises(BadRequest) as caught:
        signal_number(number)
    assert caught.value.message == f"signal={number!r} is not a signal number (1 to {signals.NSIG - 1})"


@pytest.mark.parametrize("name", ["BOGUS", "", "SIG", "-9", " 15", "TERM ", "SIG_DFL"])
def test_a_name_that_is_no_signal_is_refused_with_examples(name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        signal_number(name)
    assert caught.value.message == f"signal={name!r} is not a signal name (e.g. TERM, KILL, INT, HUP)"
    assert caught.value.code == "bad_request"


def test_a_digit_like_character_that_is_no_number_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        signal_number("²")


# ---------------------------------------------------------------------- decoding and wording


def test_msgspec_enforces_bounds_while_decoding_and_says_so_in_its_own_words() -> None:
    for op, args, words in [
        ("create", {"cpu": 0}, "Expected `float` >= 0.01 - at `$.cpu`"),
        ("create", {"ttl_seconds": -5}, "Expected `float` > 0.0 - at `$.ttl_seconds`"),
        ("write_file", write_args(mode=99999), "Expected `int` <= 4095 - at `$.mode`"),
        ("exec", exec_args(cmd=[]), "Expected `array` of length >= 1 - at `$.cmd`"),
        ("create", {"labels": {"k": "v" * 257}}, "Expected `str` of length <= 256 - at `$.labels[...]`"),
    ]:
        with pytest.raises(msgspec.ValidationError) as caught:
            decoded(op, args)
        assert not isinstance(caught.value, RuleBroken)
        assert str(caught.value) == words


def test_checks_msgspec_cannot_express_raise_rule_broken_with_the_refusal() -> None:
    assert issubclass(RuleBroken, msgspec.ValidationError)
    assert issubclass(RuleBroken, msgspec.DecodeError)
    with pytest.raises(RuleBroken) as caught:
        decoded("create", {"image": "a b"})
    assert caught.value.refusal == f"image='a b' {IMAGE}"
    assert str(caught.value) == caught.value.refusal


@pytest.mark.parametrize(
    ("op", "args", "words"),
    [
        ("create", {"cpu": "two"}, "Expected `float | null`, got `str` - at `$.cpu`"),
        ("create", {"cpu": True}, "Expected `float | null`, got `bool` - at `$.cpu`"),
        ("create", {"colour": "red"}, "Object contains unknown field `colour`"),
        ("exec", {"cmd": "ls"}, "Object missing required field `workspace_id`"),
        ("exec", exec_args(cmd=3), "Expected `str | array`, got `int` - at `$.cmd`"),
        ("get", [1], "Expected `object`, got `array`"),
        ("list", {"state": "bogus"}, "Invalid enum value 'bogus' - at `$.state`"),
        ("ping", {"x": 1}, "Object contains unknown field `x`"),
    ],
)
def test_invalid_args_keeps_msgspecs_message_for_wrong_types_and_unknown_fields(op: str, args: Any, words: str) -> None:
    assert refusal(op, args) == f"invalid args for {op}: {words}"


def test_invalid_args_keeps_msgspecs_message_for_bytes_that_are_not_messagepack() -> None:
    raw = msgspec.Raw(b"\xc1")
    with pytest.raises(msgspec.DecodeError) as caught:
        decode_args("create", raw)
    assert invalid_args("create", raw, caught.value) == (
        "invalid args for create: MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"env": {"A": 5}}, "Expected `str`, got `int` - at `$.env[...]`"),
        ({"env": {5: "x"}}, "Expected `str`, got `int` - at `key` in `$.env`"),
        ({"labels": {"k": 5}}, "Expected `str`, got `int` - at `$.labels[...]`"),
    ],
)
def test_invalid_args_keeps_msgspecs_message_for_a_wrong_type_inside_a_map(args: Any, words: str) -> None:
    assert refusal("create", args) == f"invalid args for create: {words}"


def test_invalid_args_keeps_msgspecs_message_for_a_program_that_is_not_a_string() -> None:
    assert refusal("exec", exec_args(cmd=[0])) == "invalid args for exec: Expected `str`, got `int` - at `$.cmd[0]`"


def test_messagepack_integers_are_accepted_where_seconds_or_cores_are_expected() -> None:
    create = decoded("create", {"cpu": 2, "ttl_seconds": 60})
    assert (create.cpu, create.ttl_seconds) == (2.0, 60.0)
    assert isinstance(create.cpu, float)
    assert isinstance(decoded("exec", exec_args(timeout_s=3)).timeout_s, float)
    assert isinstance(decoded("extend", {"workspace_id": "ws_1", "ttl_seconds": 1}).ttl_seconds, float)


# ---------------------------------------------------------------------- properties


@given(ENV_NAMES)
def test_any_env_name_of_the_documented_shape_is_accepted(name: str) -> None:
    assert broken_rule(CreateArgs, {"env": {name: "v"}}) is None
    assert decoded("create", {"env": {name: "v"}}).env == {name: "v"}


@given(NEAR_ENV_NAMES)
def test_any_other_env_name_is_refused(name: str) -> None:
    assume(not ENV_NAME.fullmatch(name))
    assert broken_rule(CreateArgs, {"env": {name: "v"}}) == f"env name {name!r} {ENV}"


@given(st.floats(min_value=0, max_value=315360000, exclude_min=True) | st.integers(min_value=1, max_value=315360000))
def test_any_positive_number_is_accepted_as_a_ttl(ttl: float) -> None:
    assert decoded("create", {"ttl_seconds": ttl}).ttl_seconds == ttl


@given(st.floats(max_value=0) | st.just(math.nan) | st.integers(min_value=-(2**63), max_value=0))
def test_any_number_that_is_not_positive_is_refused_as_a_ttl(ttl: float) -> None:
    assert refusal("create", {"ttl_seconds": ttl}) == f"invalid args for create: ttl_seconds={ttl!r} {TTL}"


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_a_file_mode_is_accepted_exactly_when_it_is_between_0_and_0o7777(mode: int) -> None:
    refused = broken_rule(WriteFileArgs, write_args(mode=mode))
    if 0 <= mode <= 0o7777:
        assert refused is None
        assert decoded("write_file", write_args(mode=mode)).mode == mode
    else:
        assert refused == f"mode={mode} is not a file mode (0 to 0o7777)"


# ---------------------------------------------------------------------- GitHub Apps

PEM_TEXT = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def app_args(**changes: Any) -> dict[str, Any]:
    return {"name": "ci-bot", "app_id": 1, "installation_id": 2, "private_key": PEM_TEXT, **changes}


@pytest.mark.parametrize("name", ["ci-bot", "a", "Bot.2", "x_y-z", "9" * 64])
def test_app_names_of_the_documented_shape_are_accepted(name: str) -> None:
    assert decoded("github_app_set", app_args(name=name)).name == name


@pytest.mark.parametrize("name", ["", "-bot", "a b", "bot/1", "x" * 65, "bot\n", ".hidden"])
def test_other_app_names_are_refused_naming_the_field(name: str) -> None:
    assert refusal("github_app_set", app_args(name=name)) == (
        f"invalid args for github_app_set: name={quoted(name)} is not a valid name: 1-64 of [A-Za-z0-9._-], "
        "first a letter or digit"
    )


@pytest.mark.parametrize("field", ["app_id", "installation_id"])
def test_github_ids_must_be_positive(field: str) -> None:
    assert refusal("github_app_set", app_args(**{field: 0})).endswith(f"{field}=0 must be a positive integer")


@pytest.mark.parametrize("key", ["hunter2", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "x" * 20000])
def test_a_private_key_that_is_no_pem_private_key_is_refused_without_being_quoted(key: str) -> None:
    refused = refusal("github_app_set", app_args(private_key=key))
    assert refused == (
        "invalid args for github_app_set: private_key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)"
    )
    assert key[:8] not in refused.split(": ", 1)[1].replace("-----BEGIN", "")


@pytest.mark.parametrize(
    "repo",
    ["octo/hello", "octo/hello.git", "a_b/c-d.e", "https://github.com/octo/hello.git", "http://10.0.0.1:8080/x/y"],
)
def test_repositories_are_owner_slash_name_or_http_urls(repo: str) -> None:
    assert decoded("git_clone", {"workspace_id": "ws_1", "repo": repo}).repo == repo


@pytest.mark.parametrize(
    ("repo", "quoted"),
    [("hello", "hello"), ("octo/hello/extra", "octo/hello/extra"), ("a b/c", "a b/c"), ("file:///etc/x", "file:///etc/x"),
     ("https://github.com", "https://github.com"), ("ssh://git@github.com/a/b", "ssh://***@github.com/a/b"),
     ("https://user:secret@github.com/a/b", "https://***@github.com/a/b")],
)  # fmt: skip
def test_other_repositories_are_refused_and_credentials_in_a_url_are_never_quoted(repo: str, quoted: str) -> None:
    assert refusal("git_clone", {"workspace_id": "ws_1", "repo": repo}) == (
        f"invalid args for git_clone: repo={quoted!r} is not a repository: expected owner/name or an http(s) URL"
    )


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x", "a" * 40, "release-2026"])
def test_git_refs_are_accepted(ref: str) -> None:
    assert decoded("git_clone", {"workspace_id": "ws_1", "repo": "a/b", "ref": ref}).ref == ref


@pytest.mark.parametrize("ref", ["-upload-pack=x", "a b", "a..b", "a~1", "a^", "x:y", "", "a\nb", "x" * 300])
def test_refs_that_git_would_misread_are_refused(ref: str) -> None:
    assert "is not a git ref" in refusal("git_clone", {"workspace_id": "ws_1", "repo": "a/b", "ref": ref})


def test_a_clone_depth_must_be_at_least_one() -> None:
    assert refusal("git_clone", {"workspace_id": "ws_1", "repo": "a/b", "depth": 0}).endswith(
        "depth=0 must be from 1 to 2147483647"
    )
