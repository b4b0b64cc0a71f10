"""The stand-in for Firecracker (``tests.firecracker_standin``) must answer and behave as Firecracker does.

No real Firecracker can run here, so the provider's tests drive this stand-in instead; these
tests hold it to Firecracker: its command line and exit codes, its API checked against the
Swagger spec (``../shared/specs/firecracker-api.yaml``: a body the spec forbids must be
refused, whatever the stand-in's own reading of it), its order rules, the vsock device's
handshake and closing rules, and the boot: init as PID 1 of its own namespaces over the
drives, ending with the process, leaving no process, mount or loop device behind.

The first tests need no Docker; the boot tests (``docker``) build a root filesystem from
the base image with a small test init (``tests.firecracker_standin.testing.TEST_INIT``).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runtime.config import load_settings
from tests.conftest import ROOT
from tests.firecracker_standin import BIN, read_requests, request_log
from tests.firecracker_standin.testing import (
    ApiClient,
    StandInProcess,
    build_test_rootfs,
    descendants,
    loop_devices_of,
    processes_in_namespace,
    vsock_connect,
)
from tests.helpers import poll_until

SPEC_FILE = ROOT.parent / "shared" / "specs" / "firecracker-api.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text())
VERSION = SPEC["info"]["version"]
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda ro rootfstype=ext4 init=/sbin/test-init"


def spec_validator(definition: str) -> jsonschema.Draft4Validator:
    """The spec's own schema for ``definition``, nothing added."""
    return jsonschema.Draft4Validator({"definitions": SPEC["definitions"], "$ref": f"#/definitions/{definition}"})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A kernel, a root and a data file to point the API at (contents do not matter before boot)."""
    made = {}
    for name, size in (("vmlinux", 1 << 20), ("root.ext4", 8 << 20), ("data.ext4", 8 << 20)):
        made[name] = tmp_path / name
        with open(made[name], "wb") as file:
            file.truncate(size)
    return made


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandInProcess]:
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    process = StandInProcess(vm_dir)
    try:
        yield process
    finally:
        process.stop()


def provider_calls(files: dict[str, Path], vm_dir: Path, boot_args: str = BOOT_ARGS) -> list[tuple[str, str, Any]]:
    """The calls the provider makes to configure a VM (``runtime/providers/firecracker/api.py``), in order."""
    root, data = str(files["root.ext4"]), str(files["data.ext4"])
    return [
        ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "smt": False}),
        ("PUT", "/boot-source", {"kernel_image_path": str(files["vmlinux"]), "boot_args": boot_args}),
        (
            "PUT",
            "/drives/rootfs",
            {"drive_id": "rootfs", "path_on_host": root, "is_root_device": True, "is_read_only": True},
        ),
        (
            "PUT",
            "/drives/data",
            {"drive_id": "data", "path_on_host": data, "is_root_device": False, "is_read_only": False},
        ),
        ("PUT", "/vsock", {"guest_cid": 3, "uds_path": str(vm_dir / "vsock.sock")}),
    ]


# ---------------------------------------------------------------------- the command line


def test_version_is_printed_like_firecrackers_and_exits_0() -> None:
    done = subprocess.run([str(BIN), "--version"], check=False, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"Firecracker v{VERSION}\n\n")


@pytest.mark.parametrize(
    ("argv", "debug"),
    [
        (["--bogus"], 'ParseArguments(UnexpectedArgument("bogus"))'),
        (["api.sock"], 'ParseArguments(UnexpectedArgument("api.sock"))'),
        (["--api-sock"], 'ParseArguments(MissingValue("api-sock"))'),
        (["--id", "a", "--id", "b"], 'ParseArguments(DuplicateArgument("id"))'),
        (["--no-api"], 'ParseArguments(MissingArgument("config-file"))'),
    ],
)
def test_a_bad_command_line_exits_153_with_firecrackers_error(argv: list[str], debug: str) -> None:
    done = subprocess.run([str(BIN), *argv], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 153
    assert done.stderr == f"Error: {debug}\n"
    assert "Arguments parsing error:" in done.stdout


def test_an_instance_id_firecracker_refuses_aborts_the_process_like_its_panic(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN), "--api-sock", str(tmp_path / "api.sock"), "--id", "ws_1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGABRT
    assert "Invalid instance ID: InvalidChar('_', 2)" in done.stderr
    assert not (tmp_path / "api.sock").exists()


def test_an_api_socket_path_in_use_exits_1(tmp_path: Path) -> None:
    (tmp_path / "api.sock").touch()
    done = subprocess.run(
        [str(BIN), "--api-sock", str(tmp_path / "api.sock")], check=False, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"Failed to open the API socket at: {tmp_path / 'api.sock'}. Check that it is not already used." in (
        done.stdout
    )


def test_log_path_and_level_send_firecrackers_log_to_a_file(tmp_path: Path) -> None:
    process = StandInProcess(tmp_path, "--log-path", "fc.log", "--level", "Warning", "--show-level")
    try:
        process.api.fault("PUT", "/actions", {"action_type": "FlushMetrics"})
        poll_until(lambda: "Received Error. Status code: 400" in (tmp_path / "fc.log").read_text())
        log = (tmp_path / "fc.log").read_text()
        assert "[standin-test:fc_api:ERROR] Received Error. Status code: 400 Bad Request. Message: The requested" in log
        assert "Running Firecracker" not in log, "an Info line under --level Warning"
        assert process.console_text() == ""
    finally:
        process.stop()


# ---------------------------------------------------------------------- the API, before boot


def test_the_providers_configuration_calls_are_each_answered_204(
    standin: StandInProcess, files: dict[str, Path]
) -> None:
    api = standin.api
    assert api.ok("GET", "/") == {
        "id": "standin-test",
        "state": "Not started",
        "vmm_version": VERSION,
        "app_name": "Firecracker",
    }
    for method, path, body in provider_calls(files, standin.directory):
        assert api.call(method, path, body)[0] == 204, (method, path)
    assert api.ok("GET", "/machine-config") == {
        "vcpu_count": 2,
        "mem_size_mib": 256,
        "smt": False,
        "track_dirty_pages": False,
        "huge_pages": "None",
    }
    assert api.ok("GET", "/version") == {"firecracker_version": VERSION}
    config = api.ok("GET", "/vm/config")
    assert [drive["drive_id"] for drive in config["drives"]] == ["rootfs", "data"]
    assert config["vsock"] == {"guest_cid": 3, "uds_path": str(standin.directory / "vsock.sock")}
    assert (standin.directory / "vsock.sock").exists(), "Firecracker binds the vsock socket at PUT /vsock"


def test_the_root_drive_comes_first_whatever_the_order_of_the_calls(
    standin: StandInProcess, files: dict[str, Path]
) -> None:
    calls = provider_calls(files, standin.directory)
    for method, path, body in [calls[3], calls[2]]:
        standin.api.ok(method, path, body)
    assert [d["drive_id"] for d in standin.api.ok("GET", "/vm/config")["drives"]] == ["rootfs", "data"]


def _invalid_requests(files: dict[str, Path], vm_dir: Path) -> list[tuple[str, str, Any, str]]:
    kernel, root = str(files["vmlinux"]), str(files["root.ext4"])
    drive = {"drive_id": "rootfs", "path_on_host": root, "is_root_device": True, "is_read_only": True}
    serde = "An error occurred when deserializing the json body of a request: "
    vcpus = "Machine config error: The number of vCPUs must be greater than 0, less than 32"
    return [
        ("PUT", "/machine-config", {"mem_size_mib": 256}, f"{serde}missing field `vcpu_count`"),
        ("PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 256}, f'{serde}invalid type: string "2"'),
        ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "cpus": 2}, f"{serde}unknown field `cpus`"),
        ("PUT", "/machine-config", {"vcpu_count": 33, "mem_size_mib": 256}, vcpus),
        ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 256}, vcpus),
        ("PUT", "/machine-config", {"vcpu_count": 3, "mem_size_mib": 256, "smt": True}, vcpus),
        ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 0}, "Machine config error: The memory size"),
        ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 8, "huge_pages": "1G"}, "unknown variant `1G`"),
        ("PATCH", "/machine-config", {}, "Empty PATCH request."),
        ("PUT", "/boot-source", {"kernel_image_path": kernel, "kernel": "x"}, f"{serde}unknown field `kernel`"),
        ("PUT", "/boot-source", {"boot_args": "console=ttyS0"}, f"{serde}missing field `kernel_image_path`"),
        (
            "PUT",
            "/boot-source",
            {"kernel_image_path": kernel + ".missing"},
            "Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)",
        ),
        (
            "PUT",
            "/boot-source",
            {"kernel_image_path": kernel, "boot_args": "init=/sbin/ünit"},
            "Boot source error: The kernel command line is invalid: String contains a non-printable ASCII character.",
        ),
        ("PUT", "/drives/data", drive, "The id from the path does not match the id from the body!"),
        ("PUT", "/drives/root-fs", dict(drive, drive_id="root-fs"), "API Resource IDs can only contain alphanumeric"),
        ("PUT", "/drives/", drive, "The ID cannot be empty."),
        ("PUT", "/drives/rootfs", dict(drive, is_root_device="yes"), f"{serde}invalid type: string"),
        ("PUT", "/drives/rootfs", dict(drive, io_engine="Turbo"), f"{serde}unknown variant `Turbo`"),
        (
            "PUT",
            "/drives/rootfs",
            dict(drive, path_on_host=root + ".missing"),
            "Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating "
            f"the backing file: No such file or directory (os error 2) {root}.missing",
        ),
        (
            "PUT",
            "/network-interfaces/eth0",
            {"iface_id": "eth1", "host_dev_name": "tap0"},
            "The id from the path [eth0] does not match the id from the body [eth1]!",
        ),
        (
            "PUT",
            "/network-interfaces/eth0",
            {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:1d:00"},
            f"{serde}The provided MAC address is invalid.",
        ),
        ("PUT", "/vsock", {"guest_cid": 3}, f"{serde}missing field `uds_path`"),
        (
            "PUT",
            "/vsock",
            {"guest_cid": 3, "uds_path": str(files["root.ext4"])},
            "Address already in use (os error 98)",
        ),
        ("PUT", "/vsock", {"guest_cid": 3, "uds_path": f"/tmp/{'v' * 110}"}, "path must be shorter than SUN_LEN"),
        ("PUT", "/vsock", {"guest_cid": 2, "uds_path": str(vm_dir / "v.sock")}, f"{serde}invalid value: integer `2`"),
        ("PUT", "/actions", {"action_type": "Reboot"}, f"{serde}unknown variant `Reboot`"),
        ("PUT", "/actions", {}, f"{serde}missing field `action_type`"),
        ("PUT", "/actions", None, "Empty PUT request."),
        ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, "not supported before starting the microVM."),
        ("PUT", "/actions", {"action_type": "FlushMetrics"}, "not supported before starting the microVM."),
        (
            "PUT",
            "/actions",
            {"action_type": "InstanceStart"},
            "Start microvm error: Cannot start microvm without kernel configuration.",
        ),
        ("PATCH", "/drives/rootfs", {"drive_id": "rootfs"}, "not supported before starting the microVM."),
        ("PUT", "/machines", {}, "Invalid request method and/or path: PUT machines."),
        ("PUT", "/actions/start", {"action_type": "InstanceStart"}, "Invalid request method and/or path: PUT actions."),
        ("PATCH", "/boot-source", {}, "Invalid request method and/or path: PATCH boot-source."),
        ("GET", "/machine-config", {}, "GET request cannot have a body."),
    ]


def test_each_request_firecracker_refuses_is_answered_400_with_its_fault_message(
    standin: StandInProcess, files: dict[str, Path]
) -> None:
    for method, path, body, expected in _invalid_requests(files, standin.directory):
        fault = standin.api.fault(method, path, body)
        assert expected in fault, (method, path, body, fault)
    assert standin.api.ok("GET", "/")["state"] == "Not started"


def test_a_body_that_is_not_json_is_refused_as_serde_refuses_it(standin: StandInProcess) -> None:
    fault = standin.api.fault("PUT", "/machine-config", raw=b'{"vcpu_count": 2,')
    assert fault.startswith("An error occurred when deserializing the json body of a request: ")
    fault = standin.api.fault("PUT", "/machine-config", raw=b'{"vcpu_count": 2, "vcpu_count": 2, "mem_size_mib": 1}')
    assert "duplicate field `vcpu_count`" in fault


PROVIDER_BODIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "MachineConfiguration": ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "smt": False}),
    "BootSource": ("PUT", "/boot-source", {"kernel_image_path": "/vmlinux", "boot_args": "console=ttyS0"}),
    "Drive": (
        "PUT",
        "/drives/rootfs",
        {"drive_id": "rootfs", "path_on_host": "/root.ext4", "is_root_device": True, "is_read_only": True},
    ),
    "NetworkInterface": (
        "PUT",
        "/network-interfaces/eth0",
        {"iface_id": "eth0", "host_dev_name": "fcst0", "guest_mac": "06:00:ac:1d:00:02"},
    ),
    "Vsock": ("PUT", "/vsock", {"guest_cid": 3, "uds_path": "/vsock.sock"}),
    "InstanceActionInfo": ("PUT", "/actions", {"action_type": "InstanceStart"}),
}
"""A valid body of each definition the provider sends, to break one way at a time."""

_OTHER_TYPE = {"string": 7, "integer": "7", "boolean": "true", "number": "7", "object": [], "array": {}}


def spec_mutations(definition: str, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``body`` broken in each way the spec's schema for ``definition`` names."""
    schema = SPEC["definitions"][definition]
    for name in schema.get("required", []):
        yield f"without {name}", {k: v for k, v in body.items() if k != name}
    for name, prop in schema.get("properties", {}).items():
        if "$ref" in prop:
            yield f"{name} not an object", dict(body, **{name: "x"})
            continue
        if "type" in prop:
            yield f"{name} of another type", dict(body, **{name: _OTHER_TYPE[prop["type"]]})
        if "enum" in prop:
            yield f"{name} not in its enum", dict(body, **{name: "NotAVariant"})
        if "minimum" in prop:
            yield f"{name} below its minimum", dict(body, **{name: prop["minimum"] - 1})
        if "maximum" in prop:
            yield f"{name} above its maximum", dict(body, **{name: prop["maximum"] + 1})


@pytest.mark.parametrize("definition", sorted(PROVIDER_BODIES))
def test_every_body_the_spec_forbids_is_refused(standin: StandInProcess, definition: str) -> None:
    method, path, valid = PROVIDER_BODIES[definition]
    validator = spec_validator(definition)
    assert not list(validator.iter_errors(valid)), "the base body must be valid"
    mutations = list(spec_mutations(definition, valid))
    assert mutations
    for why, body in mutations:
        assert list(validator.iter_errors(body)), f"the spec should forbid {definition} {why}"
        standin.api.fault(method, path, body)


@pytest.mark.parametrize("definition", sorted(PROVIDER_BODIES))
def test_unknown_fields_are_refused_as_firecrackers_serde_denies_them(standin: StandInProcess, definition: str) -> None:
    method, path, valid = PROVIDER_BODIES[definition]
    fault = standin.api.fault(method, path, dict(valid, surprise=1))
    assert "unknown field `surprise`" in fault


@pytest.fixture(scope="module")
def shared_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInProcess]:
    process = StandInProcess(tmp_path_factory.mktemp("vm"))
    try:
        yield process
    finally:
        process.stop()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A definition and a body near its valid one: fields dropped, changed to any JSON, or added."""
    definition = draw(st.sampled_from(sorted(PROVIDER_BODIES)))
    body = copy.deepcopy(PROVIDER_BODIES[definition][2])
    names = [*SPEC["definitions"][definition].get("properties", {}), "unknown_field"]
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(_JSON)
    return definition, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bodies())
def test_the_stand_in_never_accepts_a_body_the_spec_forbids(
    shared_standin: StandInProcess, case: tuple[str, dict[str, Any]]
) -> None:
    definition, body = case
    assume(list(spec_validator(definition).iter_errors(body)))
    method, path, _ = PROVIDER_BODIES[definition]
    shared_standin.api.fault(method, path, body)


# ---------------------------------------------------------------------- HTTP and the request log


def test_one_connection_carries_many_requests_and_responses_look_like_micro_http(standin: StandInProcess) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(standin.api_sock))
        body = b'{"vcpu_count": 1, "mem_size_mib": 128}'
        request = b"PUT /machine-config HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        sock.sendall(request % (len(body), body) + b"GET /version HTTP/1.1\r\n\r\n")
        answer = b""
        while answer.count(b"\r\n\r\n") < 2 or not answer.endswith(b"}"):
            answer += sock.recv(4096)
    first, second = answer.split(b"\r\n\r\n", 1)
    assert first == b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive"
    version = json.dumps({"firecracker_version": VERSION}).encode()
    assert second.startswith(b"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n")
    assert f"Content-Length: {len(version)}\r\n\r\n".encode() + version in second


def test_an_unknown_http_method_is_refused_by_the_http_layer(standin: StandInProcess) -> None:
    status, _, _ = ApiClient(standin.api_sock).call("POST", "/actions", {"action_type": "InstanceStart"})
    assert status == 400
    assert read_requests(standin.api_sock)[-1]["error"] == "Invalid HTTP Method: Unsupported HTTP method."


def test_an_eleventh_connection_is_told_503_like_micro_http(standin: StandInProcess) -> None:
    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(10)]
    try:
        for sock in held:
            sock.connect(str(standin.api_sock))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(10)
            extra.connect(str(standin.api_sock))
            assert extra.recv(4096).startswith(b"HTTP/1.1 503\r\n")
    finally:
        for sock in held:
            sock.close()
    poll_until(lambda: ApiClient(standin.api_sock, fresh=True).call("GET", "/")[0] == 200)


def test_every_request_is_recorded_in_order_next_to_the_api_socket(
    standin: StandInProcess, files: dict[str, Path]
) -> None:
    calls = provider_calls(files, standin.directory)
    for method, path, body in calls:
        standin.api.call(method, path, body)
    standin.api.call("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    records = read_requests(standin.api_sock)
    assert [(r["method"], r["path"], r["body"], r["status"]) for r in records] == [
        *((method, path, body, 204) for method, path, body in calls),
        ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, 400),
    ]
    assert records[-1]["fault_message"] == "The requested operation is not supported before starting the microVM."
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    provider_files = {"api.sock", "vsock.sock", "data.ext4", "console.log", "machine.json"}
    assert request_log(standin.api_sock).name not in provider_files


# ---------------------------------------------------------------------- boot (root, loop devices, Docker)


@pytest.fixture(scope="session")
def standin_rootfs(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root filesystem from the base image with the test init, built once per session."""
    image = load_settings(env={"WORKSPACE_CONFIG": str(ROOT / "configs" / "default.toml")}).default_image
    built = build_test_rootfs(docker_client, image, tmp_path_factory.mktemp("standin-rootfs") / "root.ext4")
    yield built
    built.unlink()


class Booted:
    """A stand-in whose guest (the test init) booted."""

    def __init__(self, process: StandInProcess, files: dict[str, Path]) -> None:
        self.process, self.files = process, files
        self.vsock = process.directory / "vsock.sock"

    @property
    def api(self) -> ApiClient:
        return self.process.api

    def init_pid(self) -> int:
        """The host pid of the guest's init (the stand-in's grandchild)."""
        below = descendants(self.process.process.pid)
        return below[-1]

    def report(self) -> dict[str, Any]:
        try:
            self.process.wait_for_console("test-init: ready")
        except AssertionError:
            raise AssertionError(f"the test init never got ready:\n{self.process.console_text()}") from None
        console = self.process.console_text()
        lines = [li for li in console.splitlines() if li.startswith("test-init: report ")]
        assert len(lines) == 1, console
        return dict(json.loads(lines[0].removeprefix("test-init: report ")))


def boot(
    tmp_path: Path,
    rootfs: Path,
    boot_args: str = BOOT_ARGS,
    root: Path | None = None,
    extra: tuple[tuple[str, str, Any], ...] = (),
) -> Booted:
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    data = tmp_path / "data.ext4"
    with open(data, "wb") as file:
        file.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(data)], check=True)
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\0" * 4096)
    files = {"vmlinux": kernel, "root.ext4": root or rootfs, "data.ext4": data}
    process = StandInProcess(vm_dir)
    try:
        for method, path, body in [*provider_calls(files, vm_dir, boot_args), *extra]:
            process.api.ok(method, path, body)
        process.api.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    except BaseException as exc:
        process.stop()
        raise AssertionError(f"the boot failed: {exc}\n--- console:\n{process.console_text()}") from exc
    return Booted(process, files)


@pytest.fixture
def booted(tmp_path: Path, standin_rootfs: Path) -> Iterator[Booted]:
    vm = boot(tmp_path, standin_rootfs, BOOT_ARGS + " vsock_port=52 hello -- --flag x=y")
    try:
        vm.report()
        yield vm
    finally:
        vm.process.stop()
        poll_until(lambda: not loop_devices_of(*vm.files.values()), timeout_s=30)


@pytest.mark.docker
class TestBoot:
    def test_init_runs_as_pid_1_with_what_the_kernel_gives_it(self, booted: Booted) -> None:
        report = booted.report()
        assert (report["pid"], report["sid"], report["hostname"]) == (1, 1, "(none)")
        assert report["argv"] == ["/sbin/test-init", "hello", "--flag", "x=y"]
        env = {k: v for k, v in report["env"].items() if k != "LC_CTYPE"}  # Python's own locale coercion
        assert env == {"HOME": "/", "TERM": "linux", "vsock_port": "52", "WORKSPACE_INIT_VSOCK": "unix"}
        assert report["root_read_only"] is True
        assert report["data"] == "written"

    def test_the_guest_dev_holds_the_usual_nodes_and_the_drives_in_order(self, booted: Booted) -> None:
        devices = booted.report()["dev"]
        assert set(devices) == {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "vda", "vdb"}
        for name, drive in (("vda", "root.ext4"), ("vdb", "data.ext4")):
            (loop,) = loop_devices_of(booted.files[drive])
            number = os.stat(f"/dev/{loop}").st_rdev
            assert devices[name] == ["0o60660", os.major(number), os.minor(number)], name
        assert devices["null"] == ["0o20666", 1, 3]

    def test_the_guest_has_namespaces_of_its_own(self, booted: Booted) -> None:
        init = booted.init_pid()
        for kind in ("pid", "mnt", "net", "uts", "ipc"):
            assert os.readlink(f"/proc/{init}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"), kind
        assert str(booted.files["root.ext4"]) not in Path("/proc/self/mounts").read_text()

    def test_after_instance_start_the_vm_runs_and_pre_boot_calls_are_refused(self, booted: Booted) -> None:
        assert booted.api.ok("GET", "/")["state"] == "Running"
        after = "The requested operation is not supported after starting the microVM."
        for method, path, body in [
            ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
            ("PUT", "/boot-source", {"kernel_image_path": str(booted.files["vmlinux"])}),
            ("PUT", "/vsock", {"guest_cid": 3, "uds_path": str(booted.vsock) + "2"}),
            ("PUT", "/actions", {"action_type": "InstanceStart"}),
        ]:
            assert booted.api.fault(method, path, body) == after
        booted.api.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
        statuses = [r["status"] for r in read_requests(booted.process.api_sock)]
        assert statuses[:6] == [204] * 6
        assert statuses[-1] == 204

    def test_vsock_connect_is_answered_ok_and_bytes_flow_both_ways(self, booted: Booted) -> None:
        ports = []
        for _ in range(2):
            sock, line = vsock_connect(booted.vsock, b"CONNECT 52\n")
            with sock:
                assert line.startswith(b"OK ")
                ports.append(int(line.split()[1]))
                sock.sendall(b"x" * 200_000)
                got = b""
                while len(got) < 200_000:
                    got += sock.recv(65536)
                assert got == b"x" * 200_000
        assert ports == [1 << 30, (1 << 30) + 1]
        sock, line = vsock_connect(booted.vsock, b"connect 52\n")
        with sock:
            assert line.startswith(b"OK ")

    @pytest.mark.parametrize(
        "line", [b"CONNECT 99\n", b"GARBAGE 52\n", b"CONNECT x52\n", b"CONNECT -1\n", b"CONN 52\n", b"\n"]
    )
    def test_vsock_refusals_close_the_connection_without_ok(self, booted: Booted, line: bytes) -> None:
        sock, answer = vsock_connect(booted.vsock, line)
        with sock:
            assert answer == b""

    def test_a_host_shutting_down_writing_ends_the_whole_vsock_connection(self, booted: Booted) -> None:
        sock, line = vsock_connect(booted.vsock, b"CONNECT 52\n")
        with sock:
            assert line.startswith(b"OK ")
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass  # what the guest sends after the host's end of file is dropped, as Firecracker drops it
        booted.process.wait_for_console("test-init: echo closed")

    def test_a_guest_shutting_down_writing_still_receives_from_the_host(self, booted: Booted) -> None:
        sock, line = vsock_connect(booted.vsock, b"CONNECT 53\n")
        with sock:
            assert line.startswith(b"OK ")
            assert sock.recv(3) == b"bye"
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # no end of file: the guest only shut down its writing side
            sock.setblocking(True)
            sock.sendall(b"later")
            booted.process.wait_for_console("test-init: half-close got later")
            sock.settimeout(10)
            assert sock.recv(4096) == b""  # the guest closed: now the host sees the end

    def test_send_ctrl_alt_del_reboots_the_guest_and_the_process_exits_0_leaving_nothing(self, booted: Booted) -> None:
        namespace = os.readlink(f"/proc/{booted.init_pid()}/ns/pid")
        booted.api.ok("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        assert booted.process.exit_code() == 0
        console = booted.process.console_text()
        assert "test-init: SIGINT: rebooting" in console
        assert "reboot: Restarting system" in console
        assert "Firecracker exiting successfully. exit_code=0" in console
        poll_until(lambda: not processes_in_namespace(namespace))
        poll_until(lambda: not loop_devices_of(*booted.files.values()))
        assert booted.process.api_sock.exists() and booted.vsock.exists(), "Firecracker leaves its sockets"
        done = subprocess.run(
            ["debugfs", "-R", "cat /hello", str(booted.files["data.ext4"])], check=True, capture_output=True
        )
        assert done.stdout == b"written by the guest\n"

    def test_a_sigkill_of_the_stand_in_takes_the_guest_and_its_loop_devices_with_it(self, booted: Booted) -> None:
        namespace = os.readlink(f"/proc/{booted.init_pid()}/ns/pid")
        below = descendants(booted.process.process.pid)
        booted.process.process.kill()
        booted.process.process.wait()
        poll_until(lambda: not processes_in_namespace(namespace))
        poll_until(lambda: not [pid for pid in below if Path(f"/proc/{pid}").exists()])
        poll_until(lambda: not loop_devices_of(*booted.files.values()))
        assert str(booted.files["root.ext4"]) not in Path("/proc/self/mounts").read_text()

    def test_init_ending_is_a_kernel_panic_and_the_vm_stops_after_panic_seconds(self, booted: Booted) -> None:
        sock, _ = vsock_connect(booted.vsock, b"CONNECT 54\n")
        sock.close()
        assert booted.process.exit_code() == 0
        console = booted.process.console_text()
        assert "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300" in console
        assert "Rebooting in 1 seconds.." in console


@pytest.mark.docker
def test_a_root_drive_without_a_file_system_panics_the_guest(tmp_path: Path, standin_rootfs: Path) -> None:
    empty = tmp_path / "empty.ext4"
    with open(empty, "wb") as file:
        file.truncate(8 << 20)
    vm = boot(tmp_path, standin_rootfs, root=empty)
    try:
        assert vm.process.exit_code() == 0
        assert "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(254,0)" in (
            vm.process.console_text()
        )
    finally:
        vm.process.stop()
    poll_until(lambda: not loop_devices_of(*vm.files.values()))


@pytest.mark.docker
def test_instance_start_without_a_root_drive_boots_a_guest_that_cannot_mount_root(
    standin: StandInProcess, files: dict[str, Path]
) -> None:
    standin.api.ok("PUT", "/boot-source", {"kernel_image_path": str(files["vmlinux"]), "boot_args": BOOT_ARGS})
    standin.api.ok("PUT", "/actions", {"action_type": "InstanceStart"})  # Firecracker needs no root drive to boot
    assert standin.exit_code() == 0
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)" in standin.console_text()


@pytest.mark.docker
def test_without_a_serial_console_the_guest_prints_nothing_but_still_runs(tmp_path: Path, standin_rootfs: Path) -> None:
    vm = boot(tmp_path, standin_rootfs, BOOT_ARGS.replace("console=ttyS0 ", ""))

    def answers() -> bool:
        sock, line = vsock_connect(vm.vsock, b"CONNECT 52\n")
        sock.close()
        return line.startswith(b"OK ")

    try:
        poll_until(answers)  # the guest's init listens: it runs, silently
        assert "test-init:" not in vm.process.console_text()
    finally:
        vm.process.stop()
    poll_until(lambda: not loop_devices_of(*vm.files.values()))


@pytest.mark.docker
def test_a_network_interface_becomes_the_guests_eth0_when_the_network_half_is_there(
    tmp_path: Path, standin_rootfs: Path
) -> None:
    tap = f"fcsn{os.getpid() % 100000}"
    body = {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:1d:00:07"}
    vm = boot(tmp_path, standin_rootfs, extra=(("PUT", "/network-interfaces/eth0", body),))
    try:
        report = vm.report()
        has_net_half = (ROOT / "tests" / "firecracker_standin" / "net.py").exists()
        expected = {"lo": "00:00:00:00:00:00", **({"eth0": "06:00:ac:1d:00:07"} if has_net_half else {})}
        assert report["net"] == expected
        assert Path(f"/sys/class/net/{tap}").exists()
    finally:
        vm.process.stop()
    poll_until(lambda: not Path(f"/sys/class/net/{tap}").exists())
    poll_until(lambda: not loop_devices_of(*vm.files.values()))


@pytest.mark.docker
def test_a_network_interface_opens_its_tap_as_firecracker_does(standin: StandInProcess) -> None:
    tap = f"fcst{os.getpid() % 100000}"
    body = {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:1d:00:02"}
    standin.api.ok("PUT", "/network-interfaces/eth0", body)
    assert Path(f"/sys/class/net/{tap}").exists()
    assert int(Path(f"/sys/class/net/{tap}/tun_flags").read_text(), 16) & 0x4000, "IFF_VNET_HDR"
    other = {"iface_id": "eth1", "host_dev_name": tap + "b", "guest_mac": "06:00:ac:1d:00:02"}
    fault = standin.api.fault("PUT", "/network-interfaces/eth1", other)
    assert fault == "Network config error: The MAC address is already in use: 06:00:ac:1d:00:02"
    standin.stop()
    poll_until(lambda: not Path(f"/sys/class/net/{tap}").exists())  # not persistent: gone with its last holder
