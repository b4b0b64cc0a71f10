"""Firecracker's Swagger definition as the stand-in's judge of every request.

The spec (``../shared/specs/firecracker-api.yaml`` beside the project, Swagger 2.0) is read
as is: its paths say which method and path exist, its definitions become JSON Schemas
(draft 4, which Swagger 2.0's schema objects are a subset of). Firecracker deserializes
bodies with serde, which is stricter than the spec in one way the spec does not say: the
structs behind most bodies carry ``#[serde(deny_unknown_fields)]``
(``src/vmm/src/vmm_config/*.rs``, ``request/actions.rs``), so those definitions get
``additionalProperties: false`` here. A refusal is worded as serde words it
(``missing field `x```, ``unknown field `x`, expected one of ...``), without serde's
``at line L column C``.

Where the spec is stricter than serde (``null`` for an optional field, which serde takes as
absent), the spec wins: a provider that keeps to the spec works with every Firecracker.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["SPEC_PATH", "BodyError", "Operation", "Spec", "load_spec", "parse_json"]

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "firecracker-api.yaml"
"""The spec's place: ``<project>/../shared/specs/`` (``FIRECRACKER_STANDIN_SPEC`` overrides it)."""

SERDE_DENIES_UNKNOWN_FIELDS = frozenset(
    {
        "Balloon",
        "BalloonStatsUpdate",
        "BalloonUpdate",
        "BootSource",
        "CpuConfig",
        "Drive",
        "EntropyDevice",
        "InstanceActionInfo",
        "Logger",
        "MachineConfiguration",
        "MemoryBackend",
        "MemoryHotplugConfig",
        "MemoryHotplugSizeUpdate",
        "MmdsConfig",
        "NetworkInterface",
        "PartialDrive",
        "PartialNetworkInterface",
        "PartialPmem",
        "Pmem",
        "RateLimiter",
        "SerialDevice",
        "SnapshotCreateParams",
        "SnapshotLoadParams",
        "Vm",
        "Vsock",
    }
)
"""Definitions whose Rust struct is ``#[serde(deny_unknown_fields)]`` (``git grep deny_unknown_fields``)."""


class _Yaml12Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no stubs here
    """YAML with only ``true``/``false`` as booleans (YAML 1.2): the spec's ``Off`` is a string."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class BodyError(ValueError):
    """A body serde would not deserialize; ``kind`` is ``json``, ``missing``, ``unknown``,
    ``type``, ``enum``, ``range`` or ``other``, ``field`` the offending property (if any)."""

    def __init__(self, message: str, kind: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.kind, self.field, self.value = kind, field, value


@dataclass(frozen=True)
class Operation:
    """One method on one path of the spec."""

    method: str
    template: str
    body: str | None
    """The definition the body must match, if the operation takes one."""


def _describe(value: Any) -> str:
    """A JSON value as serde names what it found (``invalid type: <this>, expected ...``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{json.dumps(value)}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "sequence" if isinstance(value, list) else "map"


_EXPECTED = {"string": "a string", "boolean": "a boolean", "integer": "an integer", "number": "a number"}


def _ticks(names: list[str]) -> str:
    if len(names) == 1:
        return f"`{names[0]}`"
    return "one of " + ", ".join(f"`{name}`" for name in names)


def parse_json(raw: bytes) -> Any:
    """A body decoded as serde_json would, or ``BodyError`` (duplicates and NaN refused)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise BodyError(f"duplicate field `{key}`", "json", key)
            seen[key] = value
        return seen

    def constant(name: str) -> Any:
        raise BodyError(f"expected value (found {name})", "json")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("invalid unicode code point", "json") from None
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        words = {"Expecting value": "expected value", "Extra data": "trailing characters"}
        message = words.get(exc.msg, exc.msg[:1].lower() + exc.msg[1:])
        raise BodyError(f"{message} at line {exc.lineno} column {exc.colno}", "json") from None


class Spec:
    """The loaded spec: its version, operations and body validators."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version: str = str(document["info"]["version"])
        self.definitions: dict[str, Any] = copy.deepcopy(document["definitions"])
        for name in SERDE_DENIES_UNKNOWN_FIELDS & self.definitions.keys():
            self.definitions[name].setdefault("additionalProperties", False)
        self.operations: list[Operation] = list(self._operations())

    def _operations(self) -> Iterator[Operation]:
        for template, methods in self.document["paths"].items():
            for method, operation in methods.items():
                if method == "parameters":
                    continue
                body = next((p for p in operation.get("parameters", []) if p.get("in") == "body"), None)
                ref = body["schema"]["$ref"].rsplit("/", 1)[-1] if body else None
                yield Operation(method.upper(), template, ref)

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation ``method path`` is an instance of (a ``{param}`` matches one segment)."""
        segments = path.split("/")
        for operation in self.operations:
            if operation.method != method:
                continue
            pattern = operation.template.split("/")
            if len(pattern) == len(segments) and all(
                want == got or (want.startswith("{") and got) for want, got in zip(pattern, segments, strict=True)
            ):
                return operation
        return None

    @cached_property
    def _validators(self) -> dict[str, jsonschema.Draft4Validator]:
        return {
            name: jsonschema.Draft4Validator({"definitions": self.definitions, "$ref": f"#/definitions/{name}"})
            for name in self.definitions
        }

    def schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of definition ``name`` (with the serde strictness added)."""
        return {"definitions": self.definitions, "$ref": f"#/definitions/{name}"}

    def check(self, name: str, body: Any, *, partial: bool = False) -> None:
        """Raise ``BodyError`` if ``body`` is not an instance of definition ``name``.

        ``partial`` drops the top-level ``required`` (``PATCH /machine-config`` takes a
        ``MachineConfigUpdate``, all of whose fields are optional, though the spec names
        ``MachineConfiguration``).
        """
        definition = self.definitions[name]
        if not isinstance(body, dict):
            raise BodyError(f"invalid type: {_describe(body)}, expected struct {name}", "type")
        validator = self._validators[name]
        if partial:
            loose = dict(definition, required=[])
            validator = jsonschema.Draft4Validator({"definitions": self.definitions, **loose})
        errors = list(validator.iter_errors(body))
        if not errors:
            return
        order = {key: index for index, key in enumerate(body)}

        def position(error: jsonschema.ValidationError) -> tuple[int, int]:
            # serde meets errors in document order and notices missing fields at the closing brace
            top = next(iter(error.absolute_path), None)
            late = error.validator == "required" and not error.absolute_path
            return (1 if late else 0, order.get(top, len(order)) if isinstance(top, str) else 0)

        raise self._serde_error(min(errors, key=position))

    def _serde_error(self, error: jsonschema.ValidationError) -> BodyError:
        path = [str(part) for part in error.absolute_path]
        field = path[-1] if path else None
        schema = error.schema if isinstance(error.schema, dict) else {}
        if error.validator == "required":
            properties = list(schema.get("properties", {}))
            required = [name for name in schema.get("required", []) if name not in error.instance]
            missing = sorted(required, key=lambda n: properties.index(n) if n in properties else len(properties))
            return BodyError(f"missing field `{missing[0]}`", "missing", missing[0])
        if error.validator == "additionalProperties":
            known = list(schema.get("properties", {}))
            extra = next(key for key in error.instance if key not in known)
            return BodyError(f"unknown field `{extra}`, expected {_ticks(known)}", "unknown", extra)
        if error.validator == "type":
            wanted = error.validator_value
            expected = "struct" if wanted == "object" else _EXPECTED.get(wanted, f"a {wanted}")
            return BodyError(f"invalid type: {_describe(error.instance)}, expected {expected}", "type", field)
        if error.validator == "enum":
            options = [str(option) for option in error.validator_value]
            if isinstance(error.instance, str):
                text = f"unknown variant `{error.instance}`, expected {_ticks(options)}"
            else:
                text = f"invalid type: {_describe(error.instance)}, expected variant identifier"
            return BodyError(text, "enum", field, error.instance)
        if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            bound = "at least" if error.validator == "minimum" else "at most"
            text = f"invalid value: {_describe(error.instance)}, expected {bound} {error.validator_value}"
            return BodyError(text, "range", field, error.instance)
        return BodyError(error.message, "other", field, error.instance)


_SPECS: dict[Path, Spec] = {}


def load_spec(path: Path | None = None) -> Spec:
    """The spec at ``path`` (default: ``FIRECRACKER_STANDIN_SPEC`` or ``SPEC_PATH``), parsed once."""
    where = path or Path(os.environ.get("FIRECRACKER_STANDIN_SPEC", SPEC_PATH))
    if where not in _SPECS:
        with open(where, encoding="utf-8") as file:
            _SPECS[where] = Spec(yaml.load(file, Loader=_Yaml12Loader))  # a SafeLoader subclass
    return _SPECS[where]
