"""A real runtime refuses an out-of-bounds ``create`` as it decodes it: nothing is created."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest
from runtime.wire import Client
from tests.conftest import leftover_containers, leftover_volumes

pytestmark = pytest.mark.docker

HUGE_NAME = "A" * 100_000


@pytest.fixture
def client(docker_runtime: Runtime) -> Iterator[Client]:
    with docker_runtime.client(timeout_s=60) as c:
        yield c


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"env": {HUGE_NAME: "x"}}, "env"),
        ({"env": {"A": "x" * (128 << 10 | 1)}}, "env"),
        ({"image": "busybox:" + "t" * 100_000}, "image"),
        ({"labels": {f"k{n}": "v" for n in range(65)}}, "labels"),
        ({"memory": "2T"}, "memory"),
    ],
)
def test_an_out_of_bounds_create_is_a_bad_request_naming_the_field_and_creates_nothing(
    docker_runtime: Runtime, docker_client: Any, client: Client, args: dict[str, Any], field: str
) -> None:
    before = client.list()
    with pytest.raises(BadRequest) as refused:
        client.request("create", args)
    assert refused.value.code == "bad_request"
    assert refused.value.message.startswith(f"invalid args for create: {field}")
    assert len(refused.value.message) < 400  # the value is quoted in part, never whole
    assert client.list() == before
    assert leftover_containers(docker_client, docker_runtime.instance_id) == []
    assert leftover_volumes(docker_client, docker_runtime.instance_id) == []
    assert client.ping()["ready"]  # the runtime answers on
