"""Configuration: defaults, then an optional TOML file, then the environment.

Every variable is declared once in ``VARIABLES`` with its default, its parser and what
it accepts. A bad value stops start-up with one line naming the variable, the value and
what is accepted (``ConfigError``). ``configs/default.toml`` documents every variable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.config import values
from runtime.errors import ConfigError

__all__ = ["DEFAULT_CONFIG_FILE", "VARIABLES", "Settings", "Variable", "load_settings"]

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = Path("configs/default.toml")


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
    Variable("ENABLE_AGENT_WORKSPACES", "enabled", False, values.boolean, "true or false"),
    Variable(
        "WORKSPACE_DEFAULT_PROVIDER",
        "default_provider",
        "gvisor",
        values.choice(*values.PROVIDERS),
        "one of " + ", ".join(values.PROVIDERS),
    ),
    Variable("WORKSPACE_MAX_CONCURRENT", "max_concurrent", 10, values.number(1, integer=True), "an integer >= 1"),
    Variable("WORKSPACE_DEFAULT_TTL_DAYS", "default_ttl_days", 30, values.number(1e-9), "a number of days > 0"),
    Variable(
        "WORKSPACE_CLEANUP_INTERVAL_MIN",
        "cleanup_interval_min",
        60,
        values.number(1e-6),
        "a number of minutes > 0 (fractions allowed)",
    ),
    Variable(
        "WORKSPACE_ALERT_THRESHOLD_PCT", "alert_threshold_pct", 80, values.number(1, 100), "a percentage from 1 to 100"
    ),
    Variable(
        "WORKSPACE_DEFAULT_CPU",
        "default_cpu",
        2,
        values.number(0.01, 1024),
        "a number of CPU cores > 0, such as 2 or 0.5",
    ),
    Variable(
        "WORKSPACE_DEFAULT_MEMORY",
        "default_memory",
        "4G",
        values.memory,
        "a size such as 4G, 512M or a number of bytes",  # at least 6M
    ),
    Variable(
        "WORKSPACE_DEFAULT_DISK",
        "default_disk",
        "10G",
        values.parse_size,
        "a size such as 10G, 512M or a number of bytes",
    ),
    Variable(
        "WORKSPACE_WARM_POOL_SIZE",
        "warm_pool_size",
        0,
        values.number(0, 1000, integer=True),
        "an integer from 0 to 1000",
    ),
    Variable(
        "WORKSPACE_READ_ONLY_ROOT",
        "read_only_root",
        False,
        values.boolean,
        "true or false",
    ),
    Variable(
        "WORKSPACE_NETWORK_NAME",
        "network_name",
        "",
        values.pattern(values.NETWORK_RE, allow_empty=True),
        "empty (a managed network workspace_net) or a Docker network name",
    ),
    Variable("E2B_API_KEY", "e2b_api_key", "", values.text, "an E2B API key", secret=True, optional=True),
    Variable(
        "E2B_DOMAIN",
        "e2b_domain",
        "e2b.app",
        values.pattern(re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$"), allow_empty=False),
        "a domain such as e2b.app (the API is https://api.<domain>)",
    ),
    Variable(
        "E2B_API_URL",
        "e2b_api_url",
        "",
        values.http_url,
        "empty (https://api.<E2B_DOMAIN>) or an http(s) URL of an E2B-compatible API",
        optional=True,
    ),
    Variable(
        "WORKSPACE_E2B_TEMPLATE",
        "e2b_template",
        "base",
        values.pattern(re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"), allow_empty=False),
        "an E2B template name or id",
    ),
    Variable(
        "WORKSPACE_E2B_MAX_TIMEOUT_S",
        "e2b_max_timeout_s",
        3600,
        values.number(60, 86400, integer=True),
        "an integer from 60 to 86400 (your E2B plan's longest sandbox timeout)",
    ),
    # The firecracker provider (docs/firecracker.md); any text is accepted, its health check says what is missing.
    Variable("FIRECRACKER_BIN", "firecracker_bin", "", values.text, "a path (default: on PATH)", optional=True),
    Variable("FIRECRACKER_KERNEL", "firecracker_kernel", "", values.text, "a guest kernel's path", optional=True),
    Variable("FIRECRACKER_INITRD", "firecracker_initrd", "", values.text, "a guest initrd's path", optional=True),
    Variable("FIRECRACKER_JAILER", "firecracker_jailer", "", values.text, "the jailer's path", optional=True),
    Variable("FIRECRACKER_MANAGER_SOCKET", "firecracker_manager_socket", "", values.text, "a path", optional=True),
    Variable("FIRECRACKER_BRIDGE", "firecracker_bridge", "awfc0", values.text, "a bridge name (up to 9 characters)"),
    Variable("FIRECRACKER_SUBNET", "firecracker_subnet", "172.29.0.0/16", values.text, "an IPv4 subnet for the VMs"),
    Variable(
        "GITHUB_APP_ENCRYPTION_KEY",
        "github_app_encryption_key",
        "",
        values.aes_key,
        "an AES-256 key: 64 hex digits or the base64 of 32 bytes",
        secret=True,
        optional=True,
    ),
    Variable(
        "WORKSPACE_ZMQ_ENDPOINT",
        "zmq_endpoint",
        "tcp://127.0.0.1:7710",
        values.pattern(values.ENDPOINT_RE, allow_empty=False),
        "a ZeroMQ endpoint such as tcp://127.0.0.1:7710 or ipc:///path",
    ),
    Variable(
        "WORKSPACE_ZMQ_EVENTS_ENDPOINT",
        "zmq_events_endpoint",
        "tcp://127.0.0.1:7711",
        values.pattern(values.ENDPOINT_RE, allow_empty=False),
        "a ZeroMQ endpoint such as tcp://127.0.0.1:7711 or ipc:///path",
    ),
    Variable(
        "WORKSPACE_ZMQ_CURVE",
        "zmq_curve",
        False,
        values.boolean,
        "true or false (true: both sockets are CurveZMQ servers admitting the keys of `workspaces keys`)",
    ),
    Variable(
        "WORKSPACE_ZMQ_SERVER_KEY",
        "zmq_server_key",
        "",
        values.text,
        "empty or the server's CURVE public key: 40 Z85 characters or the path of its server.key",
        optional=True,
    ),
    Variable(
        "WORKSPACE_ZMQ_CLIENT_KEY",
        "zmq_client_key",
        "",
        values.path,
        "empty or the path of this client's CURVE key file (workspaces keys new NAME)",
        optional=True,
    ),
    Variable("WORKSPACE_STATE_DIR", "state_dir", "~/.local/state/agent-workspaces", values.path, "a directory path"),
    Variable(
        "WORKSPACE_AUTH_TOKEN",
        "auth_token",
        "",
        values.pattern(re.compile(r"^\S{16,}$"), allow_empty=False),
        "empty (generated into STATE_DIR/token) or at least 16 non-space characters",
        secret=True,
        optional=True,
    ),
    Variable(
        "WORKSPACE_DEFAULT_IMAGE",
        "default_image",
        values.DEFAULT_IMAGE,
        values.pattern(re.compile(r"^\S+$"), allow_empty=False),
        "an image name",
    ),
    Variable("WORKSPACE_HEALTH_INTERVAL_S", "health_interval_s", 30, values.number(0.01), "a number of seconds > 0"),
    Variable(
        "WORKSPACE_FALLBACK_PROVIDERS",
        "fallback_providers",
        "",
        values.providers,
        "empty or a comma-separated list of " + ", ".join(values.PROVIDERS),
    ),
    Variable("WORKSPACE_SAMPLE_INTERVAL_S", "sample_interval_s", 5, values.number(0.01), "a number of seconds > 0"),
    Variable(
        "WORKSPACE_METRICS_ADDR",
        "metrics_addr",
        "",
        values.address,
        "empty (no metrics endpoint) or host:port such as 127.0.0.1:9464",
    ),
    Variable(
        "WORKSPACE_HTTP_ADDR",
        "http_addr",
        "",
        values.address,
        "empty (no HTTP API) or host:port such as 127.0.0.1:7780",
    ),
    Variable(
        "WORKSPACE_MCP_CONFIG",
        "mcp_config",
        "configs/mcp.toml",
        values.path,
        "the path of a TOML file declaring MCP servers (see configs/mcp.example.toml)",
    ),
    Variable(
        "GITHUB_API_URL",
        "github_api_url",
        "https://api.github.com",
        values.http_url,
        "an http(s) URL such as https://api.github.com or https://github.example.com/api/v3",
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
    github_api_url: str = "https://api.github.com"
    http_addr: str = ""
    mcp_config: Path = Path("configs/mcp.toml")
    read_only_root: bool = False
    e2b_domain: str = "e2b.app"
    e2b_api_url: str | None = None
    e2b_template: str = "base"
    e2b_max_timeout_s: int = 3600
    zmq_curve: bool = False
    firecracker_bin: str | None = None
    firecracker_kernel: str | None = None
    firecracker_initrd: str | None = None
    firecracker_jailer: str | None = None
    firecracker_manager_socket: str | None = None
    firecracker_bridge: str = "awfc0"
    firecracker_subnet: str = "172.29.0.0/16"
    zmq_server_key: str | None = None
    zmq_client_key: Path | None = None
    config_file: Path | None = None

    @property
    def token_file(self) -> Path:
        """Where the generated auth token lives."""
        return self.state_dir / "token"

    def default_image_for(self, provider: str) -> str:
        """The image (an E2B template for ``e2b``) a create without one gets on ``provider``."""
        return self.e2b_template if provider == "e2b" else self.default_image

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
