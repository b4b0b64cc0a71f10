"""The OpenAPI document: valid, complete, and made from the very structs the runtime decodes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate

from runtime.http.endpoints import ENDPOINTS, Endpoint
from runtime.http.openapi import RESULTS, document
from runtime.messages import OPS


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def refs(value: Any) -> Iterator[str]:
    """Every ``$ref`` anywhere in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    found: Any = doc
    for part in ref[2:].split("/"):
        found = found[part]
    return found


def body_schema(doc: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    operation = doc["paths"][endpoint.path][endpoint.method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    resolved: dict[str, Any] = resolve(doc, schema["$ref"]) if "$ref" in schema else schema
    return resolved


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_the_document_survives_json(doc: dict[str, Any]) -> None:
    assert msgspec.json.decode(msgspec.json.encode(doc)) == doc


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.op)
def test_every_endpoint_is_an_operation_named_by_its_op(doc: dict[str, Any], endpoint: Endpoint) -> None:
    operation = doc["paths"][endpoint.path][endpoint.method.lower()]
    assert operation["operationId"] == endpoint.op
    assert str(endpoint.status) in operation["responses"]
    named = {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "path"}
    assert named == set(re.findall(r"{(\w+)}", endpoint.path))
    queried = {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"}
    assert queried == set(endpoint.query)


def test_operation_ids_are_unique(doc: dict[str, Any]) -> None:
    ids = [operation["operationId"] for path in doc["paths"].values() for operation in path.values()]
    assert len(ids) == len(set(ids))
    assert {"events", "process_events", "healthz", "readyz"} <= set(ids)


def test_every_op_answers_a_described_result() -> None:
    assert {endpoint.op for endpoint in ENDPOINTS} == set(RESULTS)


def test_every_ref_resolves_to_a_component(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert found, "the document has no $ref at all"
    components = doc["components"]["schemas"]
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in components, ref


def test_a_json_body_does_not_ask_for_what_the_path_carries(doc: dict[str, Any]) -> None:
    exec_body = body_schema(doc, next(e for e in ENDPOINTS if e.op == "exec"))
    assert "workspace_id" not in exec_body["properties"]
    assert "workspace_id" not in exec_body["required"]
    assert "cmd" in exec_body["required"]


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.body == "json"], ids=lambda e: e.op)
def test_no_json_body_names_a_path_parameter_and_every_other_field_stays(
    doc: dict[str, Any], endpoint: Endpoint
) -> None:
    schema = body_schema(doc, endpoint)
    in_path = set(re.findall(r"{(\w+)}", endpoint.path))
    fields = {field.encode_name for field in msgspec.structs.fields(OPS[endpoint.op])}
    assert set(schema["properties"]) == fields - in_path
    required = {f.encode_name for f in msgspec.structs.fields(OPS[endpoint.op]) if f.required}
    assert set(schema.get("required", [])) == required - in_path
    assert schema["additionalProperties"] is False


def test_a_rule_of_a_struct_shows_up_in_its_schema(doc: dict[str, Any]) -> None:
    cpu = doc["components"]["schemas"]["CreateArgs"]["properties"]["cpu"]
    number = next(member for member in cpu["anyOf"] if member.get("type") == "number")
    assert (number["minimum"], number["maximum"]) == (0.01, 1024)
    ttl = doc["components"]["schemas"]["ExtendArgsBody"]["properties"]["ttl_seconds"]
    assert ttl["exclusiveMinimum"] == 0


def test_the_write_file_mode_is_described_as_octal_digits(doc: dict[str, Any]) -> None:
    endpoint = next(e for e in ENDPOINTS if e.op == "write_file")
    parameters = doc["paths"][endpoint.path]["put"]["parameters"]
    mode = next(parameter for parameter in parameters if parameter["name"] == "mode")
    assert re.fullmatch(mode["schema"]["pattern"], "755")
    assert not re.fullmatch(mode["schema"]["pattern"], "9")


def test_every_operation_asks_for_the_bearer_token_but_health_and_readiness(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    open_paths = {
        path for path, item in doc["paths"].items() for operation in item.values() if operation.get("security") == []
    }
    assert open_paths == {"/healthz", "/readyz"}


def test_errors_are_described_with_the_wire_error(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["properties"]) == {"code", "message", "retryable"}


def test_the_mcp_servers_are_described_as_mcp_list_and_as_mcps_streamable_http(doc: dict[str, Any]) -> None:
    assert doc["paths"]["/api/v1/agent/workspaces/mcp"]["get"]["operationId"] == "mcp_list"
    listed = doc["paths"]["/api/v1/agent/workspaces/mcp"]["get"]["responses"]["200"]["content"]["application/json"]
    assert resolve(doc, listed["schema"]["items"]["$ref"])["title"] == "McpServerStatus"
    transport = doc["paths"]["/api/v1/agent/workspaces/mcp/{name}"]
    assert set(transport) == {"post", "get"}  # DELETE answers 405: sessions are never terminated
    assert (transport["post"]["operationId"], transport["get"]["operationId"]) == ("mcp_message", "mcp_notifications")
    assert {"200", "202", "400", "401", "404"} <= set(transport["post"]["responses"])
    assert "Mcp-Session-Id" in transport["post"]["responses"]["200"]["headers"]
    assert set(transport["get"]["responses"]["200"]["content"]) == {"text/event-stream"}
