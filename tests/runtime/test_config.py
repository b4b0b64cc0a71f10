"""Configuration: defaults, file, environment, and one clear line per bad value."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from runtime.config import VARIABLES, Settings, load_settings, parse_size
from runtime.errors import ConfigError
from tests.conftest import ROOT

DEFAULT_FILE = ROOT / "configs" / "default.toml"


def settings_from(env: dict[str, str], tmp_path: Path) -> Settings:
    # An empty config file keeps the built-in defaults in charge.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return load_settings(env={"WORKSPACE_CONFIG": str(empty), **env})


def test_the_seed_defaults_apply_when_nothing_is_set(tmp_path: Path) -> None:
    settings = settings_from({}, tmp_path)
    assert settings.enabled is False
    assert settings.default_provider == "gvisor"
    assert settings.max_concurrent == 10
    assert settings.default_ttl_days == 30
    assert settings.cleanup_interval_min == 60
    assert settings.alert_threshold_pct == 80
    assert settings.default_cpu == 2
    assert settings.default_memory == 4 << 30
    assert settings.default_disk == 10 << 30
    assert settings.warm_pool_size == 0
    assert settings.network_name == ""
    assert settings.e2b_api_key is None
    assert settings.github_app_encryption_key is None
    assert settings.zmq_endpoint == "tcp://127.0.0.1:7710"
    assert settings.zmq_events_endpoint == "tcp://127.0.0.1:7711"
    assert settings.state_dir == Path("~/.local/state/agent-workspaces").expanduser()
    assert settings.auth_token is None
    assert settings.default_image == "agent-workspaces/base:bookworm"
    assert settings.health_interval_s == 30


def test_the_default_file_documents_every_variable_with_the_built_in_default() -> None:
    text = DEFAULT_FILE.read_text()
    values = tomllib.loads(text)
    assert set(values) == {var.name for var in VARIABLES}
    for var in VARIABLES:
        assert values[var.name] == var.default, var.name
        # every key is preceded by a comment explaining it
        before = text.split(f"\n{var.name} =")[0].rstrip().splitlines()[-1]
        assert before.startswith("#"), f"{var.name} has no comment"


def test_the_environment_wins_over_the_file_and_the_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('WORKSPACE_MAX_CONCURRENT = 4\nWORKSPACE_DEFAULT_MEMORY = "2G"\n')
    settings = load_settings(env={"WORKSPACE_CONFIG": str(config), "WORKSPACE_MAX_CONCURRENT": "7"})
    assert settings.max_concurrent == 7
    assert settings.default_memory == 2 << 30
    assert settings.default_disk == 10 << 30
    assert settings.config_file == config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 << 30),
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("1.5G", int(1.5 * (1 << 30))),
        ("4GiB", 4 << 30),
        ("4GB", 4 << 30),
        ("64k", 64 << 10),
        ("1048576", 1 << 20),
        (2048, 2048),
    ],
)
def test_sizes_accept_docker_style_units_and_bytes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "-1G", "0", "4X", "G", True])
def test_sizes_refuse_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [
        ("WORKSPACE_DEFAULT_MEMORY", "lots", "a size such as 4G"),
        ("WORKSPACE_DEFAULT_MEMORY", "1M", "a size such as 4G"),  # below the 6M Docker needs
        ("WORKSPACE_DEFAULT_PROVIDER", "kvm", "one of gvisor, firecracker, e2b"),
        ("WORKSPACE_MAX_CONCURRENT", "0", "an integer >= 1"),
        ("WORKSPACE_MAX_CONCURRENT", "2.5", "an integer >= 1"),
        ("ENABLE_AGENT_WORKSPACES", "maybe", "true or false"),
        ("WORKSPACE_ALERT_THRESHOLD_PCT", "120", "a percentage from 1 to 100"),
        ("WORKSPACE_CLEANUP_INTERVAL_MIN", "-1", "a number of minutes > 0"),
        ("WORKSPACE_DEFAULT_CPU", "nan", "a number of CPU cores > 0"),
        ("WORKSPACE_NETWORK_NAME", "bad name!", "a Docker network name"),
        ("WORKSPACE_ZMQ_ENDPOINT", "http://x", "a ZeroMQ endpoint"),
        ("WORKSPACE_HEALTH_INTERVAL_S", "soon", "a number of seconds > 0"),
        ("WORKSPACE_FALLBACK_PROVIDERS", "e2b,kvm", "a comma-separated list of gvisor, firecracker, e2b"),
        ("WORKSPACE_METRICS_ADDR", "9464", "host:port such as 127.0.0.1:9464"),
        ("WORKSPACE_SAMPLE_INTERVAL_S", "0", "a number of seconds > 0"),
    ],
)
def test_a_bad_value_gives_one_line_naming_variable_value_and_what_is_accepted(
    name: str, value: str, accepts: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({name: value}, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={value!r}")
    assert accepts in message


def test_a_malformed_secret_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({"GITHUB_APP_ENCRYPTION_KEY": "not-a-key-supersecret"}, tmp_path)
    assert "supersecret" not in str(caught.value)
    assert "GITHUB_APP_ENCRYPTION_KEY=<hidden>" in str(caught.value)
    assert "64 hex digits or the base64 of 32 bytes" in str(caught.value)


def test_an_aes_key_is_accepted_as_hex_or_base64(tmp_path: Path) -> None:
    key = bytes(range(32))
    assert settings_from({"GITHUB_APP_ENCRYPTION_KEY": key.hex()}, tmp_path).github_app_encryption_key == key
    import base64

    encoded = base64.b64encode(key).decode()
    assert settings_from({"GITHUB_APP_ENCRYPTION_KEY": encoded}, tmp_path).github_app_encryption_key == key
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(ConfigError):
        settings_from({"GITHUB_APP_ENCRYPTION_KEY": short}, tmp_path)


def test_a_bad_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('WORKSPACE_DEFAULT_DISK = "huge"\n')
    with pytest.raises(ConfigError, match=r"WORKSPACE_DEFAULT_DISK='huge' \(in .*config.toml\) is not valid"):
        load_settings(env={"WORKSPACE_CONFIG": str(config)})


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("WORKSPACE_MAX_CONCURENT = 3\n")
    with pytest.raises(ConfigError, match="unknown variable 'WORKSPACE_MAX_CONCURENT'"):
        load_settings(env={"WORKSPACE_CONFIG": str(config)})


def test_a_missing_or_broken_config_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(env={"WORKSPACE_CONFIG": str(tmp_path / "nope.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("WORKSPACE_MAX_CONCURRENT = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(env={"WORKSPACE_CONFIG": str(broken)})


def test_an_unknown_workspace_variable_in_the_environment_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings_from({"WORKSPACE_MAX_CONCURENT": "3"}, tmp_path)
    assert "ignoring unknown variable WORKSPACE_MAX_CONCURENT" in caplog.text


def test_fractional_cleanup_intervals_are_accepted(tmp_path: Path) -> None:
    assert settings_from({"WORKSPACE_CLEANUP_INTERVAL_MIN": "0.05"}, tmp_path).cleanup_interval_min == 0.05


def test_fallback_providers_and_the_metrics_address_are_parsed(tmp_path: Path) -> None:
    settings = settings_from(
        {"WORKSPACE_FALLBACK_PROVIDERS": " E2B, firecracker,e2b ", "WORKSPACE_METRICS_ADDR": "127.0.0.1:9464"}, tmp_path
    )
    assert settings.fallback_providers == ("e2b", "firecracker")
    assert settings.metrics_addr == "127.0.0.1:9464"
    assert settings_from({}, tmp_path).fallback_providers == ()
