"""The stand-in's process: Firecracker's ``main`` with its API server, its exits and its request log.

Exit codes and words as ``src/firecracker/src/main.rs``: ``--version`` prints
``Firecracker v<version>`` and a blank line; a bad argument exits 153, a bad ``--level``
152, a socket that cannot be bound 1; an invalid ``--id`` (only alphanumerics and ``-``,
1 to 64 characters) is a Rust panic, so the process aborts (``SIGABRT``). When the guest
reboots or powers off, the process exits 0 and leaves its socket files where they are.

Every API request is also appended to ``<api-sock>.requests.jsonl`` (``REQUEST_LOG_SUFFIX``),
one JSON object per line, written before the response is sent: ``seq``, ``time``,
``method``, ``path``, ``body`` (the JSON body, ``null`` without one), ``raw_body`` (only if
the body is not JSON), ``status``, ``fault_message`` (``null`` on success), ``state``
(before the call), and ``error`` for a request the HTTP layer could not parse.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tests.firecracker_standin import REQUEST_LOG_SUFFIX
from tests.firecracker_standin.arguments import EXIT_ARG_PARSING, ArgumentError, parse, usage
from tests.firecracker_standin.boot import Guest
from tests.firecracker_standin.http import ApiServer, Request, Response
from tests.firecracker_standin.logs import LEVELS, Logger
from tests.firecracker_standin.resources import Fault, io_error
from tests.firecracker_standin.routes import route
from tests.firecracker_standin.spec import Spec, load_spec
from tests.firecracker_standin.vmm import Answer, Vmm

__all__ = ["main"]

_EXIT_BAD_CONFIGURATION = 152
_SNAPSHOT_VERSION = "11.0.0"


def _panic(message: str) -> None:
    """A Rust panic in ``main`` (Firecracker is built with ``panic = "abort"``)."""
    sys.stderr.write(f"thread 'main' panicked at src/firecracker/src/main.rs:\n{message}\n")
    sys.stderr.flush()
    os.abort()


def _instance_id_error(instance_id: str) -> str | None:
    """``validate_instance_id``'s error in ``Debug`` form."""
    if not 1 <= len(instance_id) <= 64:
        return f"InvalidLen({len(instance_id)}, 1, 64)"
    for index, char in enumerate(instance_id):
        if not (char == "-" or char.isalnum()):
            return f"InvalidChar({char!r}, {index})"
    return None


class RequestLog:
    """``<api-sock>.requests.jsonl``: every request and its answer, in order."""

    def __init__(self, api_sock: str) -> None:
        self.path = api_sock + REQUEST_LOG_SUFFIX
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open for the process
        self._seq = 0

    def write(self, record: dict[str, Any]) -> None:
        self._seq += 1
        self._file.write(json.dumps({"seq": self._seq, "time": time.time(), **record}) + "\n")


def _record(request: Request, answer: Answer, state: str) -> dict[str, Any]:
    record: dict[str, Any] = {"method": request.method, "path": request.path, "body": None}
    if request.body is not None:
        try:
            record["body"] = json.loads(request.body)
        except ValueError:
            record["raw_body"] = request.body.decode("utf-8", errors="replace")
    fault = answer.body.get("fault_message") if answer.status >= 400 and isinstance(answer.body, dict) else None
    return {**record, "status": answer.status, "fault_message": fault, "state": state}


class StandIn:
    """The API server, the VMM and the main thread's duties."""

    def __init__(self, spec: Spec, logger: Logger, instance_id: str) -> None:
        self.spec, self.logger = spec, logger
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self.vmm = Vmm(instance_id, spec.version, logger, self._on_main)
        self._lock = threading.Lock()  # Firecracker's VMM thread takes one request at a time
        self.log: RequestLog | None = None

    def _on_main(self, call: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._calls.put((call, future))
        return future.result()

    def handle(self, request: Request) -> Response:
        with self._lock:
            described = f"{request.method.capitalize()} request on {json.dumps(request.path)}"
            if request.body is not None:
                described += f" with body {json.dumps(request.body.decode('utf-8', errors='replace'))}"
            self.logger.info(f"The API server received a {described}.")
            state = self.vmm.state
            try:
                answer = self.vmm.handle(route(self.spec, request.method, request.path, request.body))
            except Fault as exc:
                answer = Answer(400, {"fault_message": str(exc)})
            except Exception as exc:  # a bug of the stand-in: answer it, as the call would otherwise hang
                answer = Answer(400, {"fault_message": f"the Firecracker stand-in failed: {exc!r}"})
            if answer.status == 204:
                self.logger.info("The request was executed successfully. Status code: 204 No Content.")
            elif answer.status == 200:
                self.logger.info("The request was executed successfully. Status code: 200 OK.")
            else:
                fault = answer.body.get("fault_message") if isinstance(answer.body, dict) else answer.body
                self.logger.error(f"Received Error. Status code: 400 Bad Request. Message: {fault}")
            assert self.log is not None
            self.log.write(_record(request, answer, state))
            body = None if answer.body is None else json.dumps(answer.body).encode()
            return Response(answer.status, body, answer.deprecated)

    def parse_error(self, text: str) -> None:
        with self._lock:
            assert self.log is not None
            self.log.write({"method": None, "path": None, "body": None, "status": 400, "error": text})

    def run(self) -> int:
        """Serve calls for the main thread until a guest booted; then wait for it to end."""
        while True:
            call, future = self._calls.get()
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
                continue
            future.set_result(result)
            if isinstance(getattr(call, "__self__", None), Guest):
                guest: Guest = call.__self__  # type: ignore[attr-defined]
                break
        guest.wait()
        with self._lock:
            self.vmm.close()
        self.logger.info("Firecracker exiting successfully. exit_code=0", thread="main")
        return 0


def _fail(logger: Logger, display: str, debug: str, code: int) -> int:
    logger.error(display, thread="main")
    sys.stderr.write(f"Error: {debug}\n")
    logger.error(f"Firecracker exiting with error. exit_code={code}", thread="main")
    return code


def run(argv: list[str]) -> int:
    """The process's work; its exit code."""
    try:
        arguments = parse(argv)
    except ArgumentError as exc:
        logger = Logger("anonymous-instance")
        display = f"Arguments parsing error: {exc} \n\nFor more information try --help."
        return _fail(logger, display, f"ParseArguments({exc.debug})", EXIT_ARG_PARSING)
    try:
        spec = load_spec()
    except OSError as exc:
        sys.stderr.write(f"the Firecracker stand-in cannot read Firecracker's API spec: {exc}\n")
        return 1
    if "help" in arguments.flags:
        sys.stdout.write(f"Firecracker v{spec.version}\n\n{usage()}\n")
        return 0
    if "version" in arguments.flags:
        sys.stdout.write(f"Firecracker v{spec.version}\n\n")
        return 0
    if "snapshot-version" in arguments.flags:
        sys.stdout.write(f"v{_SNAPSHOT_VERSION}\n")
        return 0
    instance_id = arguments.value("id") or ""
    if problem := _instance_id_error(instance_id):
        _panic(f"Invalid instance ID: {problem}")
    logger = Logger(instance_id)
    level = arguments.value("level")
    if level is not None and level.lower() not in LEVELS:
        display = f"Invalid value for logger level: {level}.Possible values: [Error, Warning, Info, Debug]"
        return _fail(logger, display, f"InvalidLogLevel(LevelFilterFromStrError({level!r}))", _EXIT_BAD_CONFIGURATION)
    try:
        logger.configure(arguments.value("log-path"), level, "show-level" in arguments.flags or None)
    except OSError as exc:
        text = f"Failed to open target file: {io_error(exc)}"
        return _fail(logger, f"Could not initialize logger: {text}", f"LoggerInitialization({text!r})", 1)
    logger.info(f"Running Firecracker v{spec.version}", thread="main")
    for unsupported in ("config-file", "describe-snapshot", "enable-pci"):
        if unsupported in arguments.values or unsupported in arguments.flags:
            text = f"the Firecracker stand-in does not emulate --{unsupported}"
            return _fail(logger, text, f"StandIn({text!r})", 1)
    payload = arguments.value("http-api-max-payload-size") or ""
    if not payload.isdigit():
        _panic("'http-api-max-payload-size' parameter expected to be of 'usize' type.")
    stand_in = StandIn(spec, logger, instance_id)
    if metrics := arguments.value("metrics-path"):
        try:
            stand_in.vmm.configure_metrics({"metrics_path": metrics})
        except Fault as exc:
            text = str(exc).removeprefix("Metrics error: ")
            return _fail(logger, f"Could not initialize metrics: {text}", f"MetricsInitialization({text!r})", 1)
    api_sock = arguments.value("api-sock") or ""
    try:
        server = ApiServer(api_sock, stand_in.handle, stand_in.parse_error, int(payload))
    except OSError as exc:
        if exc.errno == 98:
            text = f"Failed to open the API socket at: {api_sock}. Check that it is not already used."
            return _fail(logger, f"RunWithApi error: {text}", f"RunWithApi(FailedToBindSocket({api_sock!r}))", 1)
        text = f"Failed to bind and run the HTTP server: IO error: {io_error(exc)}"
        return _fail(logger, f"RunWithApi error: {text}", f"RunWithApi({text!r})", 1)
    except ValueError as exc:
        text = f"Failed to bind and run the HTTP server: IO error: {exc}"
        return _fail(logger, f"RunWithApi error: {text}", f"RunWithApi({text!r})", 1)
    stand_in.log = RequestLog(api_sock)
    logger.info(f"Listening on API socket ({json.dumps(api_sock)}).", thread="main")
    server.start()
    logger.info("API server started.")
    return stand_in.run()


def main(argv: list[str]) -> int:
    """``firecracker [arguments]`` (``argv[0]`` is the program)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Firecracker installs no handler: SIGINT ends it
    code = run(argv[1:])
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)  # daemon threads (API connections, vsock streams) end with the process
