"""Configuration: defaults, then an optional TOML file, then the environment.

Every variable is declared once in ``VARIABLES`` with its default, its parser and what
it accepts. A bad value stops start-up with one line naming the variable, the value and
what is accepted (``ConfigError``). ``configs/default.toml`` documents every variable.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "PROVIDERS",
    "VARIABLES",
    "Settings",
    "Variable",
    "load_settings",
    "parse_size",
]

log = logging.getLogger(__name__)

PROVIDERS = ("gvisor", "firecracker", "e2b")
DEFAULT_CONFIG_FILE = Path("configs/default.toml")
DEFAULT_IMAGE = "agent-workspaces/base:bookworm"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENDPOINT_RE = re.compile(r"^(tcp://\S+:(\d+|\*)|ipc://\S+|inproc://\S+)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_size(value: object) -> int:
    """Parse a size such as ``4G``, ``512M``, ``1.5g``, ``4GiB`` or a byte count.

    Units are binary (``1G`` is 1024**3 bytes), as in Docker's ``--memory``.

    Raises:
        ValueError: ``value`` is not a positive size.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(value)
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise ValueError(value)
    number, unit, _ = match.groups()
    size = int(float(number) * _SIZE_UNITS[unit.lower()])
    if size <= 0:
        raise ValueError(value)
    return size


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _number(low: float, high: float = math.inf, *, integer: bool = False) -> Callable[[object], Any]:
    def parse(value: object) -> float | int:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(value)
        if integer:
            if number != int(number):
                raise ValueError(value)
            return int(number)
        return number

    return parse


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(value)
        return text

    return parse


def _pattern(regex: re.Pattern[str], *, allow_empty: bool) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip()
        if (text or not allow_empty) and not regex.match(text):
            raise ValueError(value)
        return text

    return parse


def _providers(value: object) -> tuple[str, ...]:
    """A comma-separated list of provider names (empty: none), duplicates removed."""
    names = [part.strip().lower() for part in str(value).split(",") if part.strip()]
    if any(name not in PROVIDERS for name in names):
        raise ValueError(value)
    return tuple(dict.fromkeys(names))


def _address(value: object) -> str:
    """``host:port`` to listen on (empty: off)."""
    text = str(value).strip()
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return text


def _text(value: object) -> str:
    return str(value).strip()


def _path(value: object) -> Path:
    text = str(value).strip()
    if not text:
        raise ValueError(value)
    return Path(text).expanduser()


def _aes_key(value: object) -> bytes:
    """An AES-256 key: 64 hex digits or base64 (standard or url-safe) of 32 bytes."""
    text = str(value).strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None, validate=True
        )
    except (binascii.Error, ValueError):
        raise ValueError(value) from None
    if len(key) != 32:
        raise ValueError(value)
    return key


@dataclass(frozen=True)
class Variable:
    """One configuration variable.

    Attributes:
        name: The environment variable (and TOML key) name.
        field: The ``Settings`` attribute it sets.
        default: The default as an operator would write it (parsed like any value).
        parse: Turns a raw value into the typed setting; raises ``ValueError`` if invalid.
        accepts: What is accepted, for error messages.
        secret: Never echo the value in errors or logs.
        optional: An empty value means "not set" (the field becomes ``None``).
    """

    name: str
    field: str
    default: object
    parse: Callable[[object], Any]
    accepts: str
    secret: bool = False
    optional: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable("ENABLE_AGENT_WORKSPACES", "enabled", False, _bool, "true or false"),
    Variable(
        "WORKSPACE_DEFAULT_PROVIDER",
        "default_provider",
        "gvisor",
        _choice(*PROVIDERS),
        "one of " + ", ".join(PROVIDERS),
    ),
    Variable("WORKSPACE_MAX_CONCURRENT", "max_concurrent", 10, _number(1, integer=True), "an integer >= 1"),
    Variable("WORKSPACE_DEFAULT_TTL_DAYS", "default_ttl_days", 30, _number(1e-9), "a number of days > 0"),
    Variable(
        "WORKSPACE_CLEANUP_INTERVAL_MIN",
        "cleanup_interval_min",
        60,
        _number(1e-6),
        "a number of minutes > 0 (fractions allowed)",
    ),
    Variable("WORKSPACE_ALERT_THRESHOLD_PCT", "alert_threshold_pct", 80, _number(1, 100), "a percentage from 1 to 100"),
    Variable(
        "WORKSPACE_DEFAULT_CPU", "default_cpu", 2, _number(0.01, 1024), "a number of CPU cores > 0, such as 2 or 0.5"
    ),
    Variable(
        "WORKSPACE_DEFAULT_MEMORY", "default_memory", "4G", parse_size, "a size such as 4G, 512M or a number of bytes"
    ),
    Variable(
        "WORKSPACE_DEFAULT_DISK", "default_disk", "10G", parse_size, "a size such as 10G, 512M or a number of bytes"
    ),
    Variable(
        "WORKSPACE_WARM_POOL_SIZE", "warm_pool_size", 0, _number(0, 1000, integer=True), "an integer from 0 to 1000"
    ),
    Variable(
        "WORKSPACE_NETWORK_NAME",
        "network_name",
        "",
        _pattern(_NETWORK_RE, allow_empty=True),
        "empty (a managed network workspace_net) or a Docker network name",
    ),
    Variable("E2B_API_KEY", "e2b_api_key", "", _text, "an E2B API key", secret=True, optional=True),
    Variable(
        "GITHUB_APP_ENCRYPTION_KEY",
        "github_app_encryption_key",
        "",
        _aes_key,
        "an AES-256 key: 64 hex digits or the base64 of 32 bytes",
        secret=True,
        optional=True,
    ),
    Variable(
        "WORKSPACE_ZMQ_ENDPOINT",
        "zmq_endpoint",
        "tcp://127.0.0.1:7710",
        _pattern(_ENDPOINT_RE, allow_empty=False),
        "a ZeroMQ endpoint such as tcp://127.0.0.1:7710 or ipc:///path",
    ),
    Variable(
        "WORKSPACE_ZMQ_EVENTS_ENDPOINT",
        "zmq_events_endpoint",
        "tcp://127.0.0.1:7711",
        _pattern(_ENDPOINT_RE, allow_empty=False),
        "a ZeroMQ endpoint such as tcp://127.0.0.1:7711 or ipc:///path",
    ),
    Variable("WORKSPACE_STATE_DIR", "state_dir", "~/.local/state/agent-workspaces", _path, "a directory path"),
    Variable(
        "WORKSPACE_AUTH_TOKEN",
        "auth_token",
        "",
        _pattern(re.compile(r"^\S{16,}$"), allow_empty=False),
        "empty (generated into STATE_DIR/token) or at least 16 non-space characters",
        secret=True,
        optional=True,
    ),
    Variable(
        "WORKSPACE_DEFAULT_IMAGE",
        "default_image",
        DEFAULT_IMAGE,
        _pattern(re.compile(r"^\S+$"), allow_empty=False),
        "an image name",
    ),
    Variable("WORKSPACE_HEALTH_INTERVAL_S", "health_interval_s", 30, _number(0.01), "a number of seconds > 0"),
    Variable(
        "WORKSPACE_FALLBACK_PROVIDERS",
        "fallback_providers",
        "",
        _providers,
        "empty or a comma-separated list of " + ", ".join(PROVIDERS),
    ),
    Variable("WORKSPACE_SAMPLE_INTERVAL_S", "sample_interval_s", 5, _number(0.01), "a number of seconds > 0"),
    Variable(
        "WORKSPACE_METRICS_ADDR",
        "metrics_addr",
        "",
        _address,
        "empty (no metrics endpoint) or host:port such as 127.0.0.1:9464",
    ),
)

_BY_NAME = {var.name: var for var in VARIABLES}


@dataclass(frozen=True)
class Settings:
    """The runtime's effective configuration. Build it with ``load_settings``.

    For embedded use, ``dataclasses.replace(load_settings(env={}), enabled=True, ...)``
    gives settings independent of the process environment.
    """

    enabled: bool
    default_provider: str
    max_concurrent: int
    default_ttl_days: float
    cleanup_interval_min: float
    alert_threshold_pct: float
    default_cpu: float
    default_memory: int
    default_disk: int
    warm_pool_size: int
    network_name: str
    e2b_api_key: str | None
    github_app_encryption_key: bytes | None
    zmq_endpoint: str
    zmq_events_endpoint: str
    state_dir: Path
    auth_token: str | None
    default_image: str
    health_interval_s: float
    fallback_providers: tuple[str, ...] = ()
    sample_interval_s: float = 5.0
    metrics_addr: str = ""
    config_file: Path | None = None

    @property
    def token_file(self) -> Path:
        """Where the generated auth token lives."""
        return self.state_dir / "token"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (values already typed)."""
        return dataclasses.replace(self, **changes)


def _parse(var: Variable, raw: object, source: str) -> Any:
    if var.optional and (raw is None or str(raw).strip() == ""):
        return None
    try:
        return var.parse(raw)
    except (ValueError, TypeError, OverflowError):
        shown = "<hidden>" if var.secret else repr(raw)
        raise ConfigError(f"{var.name}={shown}{source} is not valid: expected {var.accepts}") from None


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"WORKSPACE_CONFIG={str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"WORKSPACE_CONFIG={str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_BY_NAME))
    if unknown:
        raise ConfigError(
            f"WORKSPACE_CONFIG={str(path)!r} has unknown variable {unknown[0]!r}: "
            "expected names from configs/default.toml"
        )
    return data


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from defaults, the config file and the environment.

    Args:
        env: The environment to read (``os.environ`` when ``None``).

    Returns:
        The validated settings.

    Raises:
        ConfigError: A value is invalid, or the config file is unreadable.
    """
    env = os.environ if env is None else env
    explicit = env.get("WORKSPACE_CONFIG", "").strip()
    config_file: Path | None = Path(explicit).expanduser() if explicit else DEFAULT_CONFIG_FILE
    if explicit or (config_file is not None and config_file.is_file()):
        file_values = _read_file(config_file)  # type: ignore[arg-type]
    else:
        config_file, file_values = None, {}
    values: dict[str, Any] = {}
    for var in VARIABLES:
        if var.name in env:
            values[var.field] = _parse(var, env[var.name], "")
        elif var.name in file_values:
            values[var.field] = _parse(var, file_values[var.name], f" (in {config_file})")
        else:
            values[var.field] = _parse(var, var.default, " (built-in default)")
    for name in env:
        if name.startswith("WORKSPACE_") and name not in _BY_NAME and name != "WORKSPACE_CONFIG":
            log.warning("ignoring unknown variable %s: known variables are listed in configs/default.toml", name)
    return Settings(**values, config_file=config_file)
