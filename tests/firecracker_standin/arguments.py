"""Firecracker's command line (``src/firecracker/src/main.rs`` with ``utils::arg_parser``).

Every argument is ``--name`` (a value, if it takes one, is the next word and must not start
with ``--``); ``--help``/``-h`` and ``--version`` anywhere win; words after ``--`` are
ignored. A refusal prints ``Error: ParseArguments(...)`` on stderr and exits 153.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EXIT_ARG_PARSING", "ArgumentError", "Arguments", "parse", "usage"]

EXIT_ARG_PARSING = 153
"""``FcExitCode::ArgParsing``."""

_TAKES_VALUE = {
    "api-sock": "Path to unix domain socket used by the API.",
    "id": "MicroVM unique identifier.",
    "seccomp-filter": "Optional parameter which allows specifying the path to a custom seccomp filter.",
    "start-time-us": "Process start time (wall clock, microseconds). This parameter is optional.",
    "start-time-cpu-us": "Process start CPU time (wall clock, microseconds). This parameter is optional.",
    "parent-cpu-time-us": "Parent process CPU time (wall clock, microseconds). This parameter is optional.",
    "config-file": "Path to a file that contains the microVM configuration in JSON format.",
    "metadata": "Path to a file that contains metadata in JSON format to add to the mmds.",
    "log-path": "Path to a fifo or a file used for configuring the logger on startup.",
    "level": "Set the logger level.",
    "module": "Set the logger module filter.",
    "metrics-path": "Path to a fifo or a file used for configuring the metrics on startup.",
    "describe-snapshot": "Print the data format version of the provided snapshot state file.",
    "http-api-max-payload-size": "Http API request payload max size, in bytes.",
    "mmds-size-limit": "Mmds data store limit, in bytes.",
}
_FLAGS = {
    "no-seccomp": "Optional parameter which allows starting and using a microVM without seccomp filtering.",
    "no-api": "Optional parameter which allows starting and using a microVM without an active API socket.",
    "show-level": "Whether or not to output the level in the logs.",
    "show-log-origin": "Whether or not to include the file path and line number of the log's origin.",
    "boot-timer": "Whether or not to load boot timer device for logging elapsed time since InstanceStart command.",
    "version": "Print the binary version number.",
    "snapshot-version": "Print the supported data format version.",
    "enable-pci": "Enables PCIe support.",
}
_DEFAULTS = {"api-sock": "/run/firecracker.socket", "id": "anonymous-instance", "http-api-max-payload-size": "51200"}
_REQUIRES = {"no-api": "config-file"}
_FORBIDS = {"seccomp-filter": ("no-seccomp",), "no-seccomp": ("seccomp-filter",)}


class ArgumentError(Exception):
    """``UtilsArgParserError``: ``debug`` is its Rust ``Debug``, ``str()`` its ``Display``."""

    def __init__(self, variant: str, *names: str) -> None:
        self.debug = f"{variant}({', '.join(_rust_str(name) for name in names)})"
        texts = {
            "ForbiddenArgument": "Argument '{1}' cannot be used together with argument '{0}'.",
            "MissingArgument": "Argument '{0}' required, but not found.",
            "MissingValue": "The argument '{0}' requires a value, but none was supplied.",
            "UnexpectedArgument": "Found argument '{0}' which wasn't expected, or isn't valid in this context.",
            "DuplicateArgument": "The argument '{0}' was provided more than once.",
        }
        super().__init__(texts[variant].format(*names))


def _rust_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Arguments:
    """The parsed command line."""

    values: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def value(self, name: str) -> str | None:
        """The value given, or the default."""
        return self.values.get(name, _DEFAULTS.get(name))


def parse(argv: list[str]) -> Arguments:
    """``argv`` without the program name.

    Raises:
        ArgumentError: As Firecracker's parser refuses it.
    """
    words = argv[: argv.index("--")] if "--" in argv else list(argv)
    parsed = Arguments()
    if "--help" in words or "-h" in words:
        parsed.flags.add("help")
        return parsed
    if "--version" in words:
        parsed.flags.add("version")
        return parsed
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if not word.startswith("--"):
            raise ArgumentError("UnexpectedArgument", word)
        name = word[2:]
        if name not in _TAKES_VALUE and name not in _FLAGS:
            raise ArgumentError("UnexpectedArgument", name)
        if name in parsed.values or name in parsed.flags:
            raise ArgumentError("DuplicateArgument", name)
        if name in _FLAGS:
            parsed.flags.add(name)
            continue
        if position >= len(words) or words[position].startswith("--"):
            raise ArgumentError("MissingValue", name)
        parsed.values[name] = words[position]
        position += 1
    given = set(parsed.values) | parsed.flags
    for name in sorted(given):  # Firecracker checks its BTreeMap of arguments in name order
        if name in _REQUIRES and _REQUIRES[name] not in given:
            raise ArgumentError("MissingArgument", _REQUIRES[name])
        for other in _FORBIDS.get(name, ()):
            if other in given:
                raise ArgumentError("ForbiddenArgument", name, other)
    return parsed


def usage() -> str:
    """``--help``'s list of arguments."""
    lines = []
    names = sorted([*_TAKES_VALUE, *_FLAGS])
    shown = {name: f"  --{name} <{name}>" if name in _TAKES_VALUE else f"  --{name}" for name in names}
    width = max(len(text) for text in shown.values())
    for name in names:
        text = _TAKES_VALUE.get(name) or _FLAGS[name]
        if name in _DEFAULTS:
            text += f' [default: "{_DEFAULTS[name]}"]'
        lines.append(f"{shown[name]:<{width}}   {text}")
    return "optional arguments:\n" + "\n".join(lines)
