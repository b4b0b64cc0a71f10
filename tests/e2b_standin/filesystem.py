# ruff: noqa: UP006, UP007, UP035, UP045
# (The overrides spell their annotations as the SDK does, with typing's Optional, Dict, List...:
# typing.Dict[str, str] != dict[str, str], and the signatures must equal the SDK's, annotations too.)
"""``sandbox.files`` of a stand-in sandbox: the SDK's ``Filesystem``, on the sandbox's container.

``StandInFilesystem`` is an instance of the SDK's ``Filesystem`` whose methods have the SDK's
exact signatures and do what envd does (``packages/envd`` of e2b-dev/infra), in the
container, as root for the given user (default ``user``): paths relative or with ``~`` are
under the user's home; a write creates the missing parent directories, owned by the user,
and leaves the file owned by the user; ``remove`` of a missing path is not an error; entries
carry envd's fields (Go's mode string, owner names, symlinks with their target's type).
The work is one ``python3`` helper per call (``_helper.py``), binary-safe over the
``docker exec`` pipes. Failures are answered as envd answers them (an HTTP status for
``read``/``write``, a Connect code for the rest) and mapped by the SDK's own functions and
maps, so ``FileNotFoundException`` and the rest are the SDK's. ``files.write`` is the SDK's
own, over ``write_files``; ``watch_dir`` is not served.
"""

import io
import json
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Union, cast

import httpx
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.connection_config import ConnectionConfig, Username
from e2b.envd.api import format_envd_api_exception
from e2b.envd.filesystem import filesystem_pb
from e2b.envd.rpc import handle_rpc_exception
from e2b.envd.versions import ENVD_FILE_METADATA
from e2b.exceptions import InvalidArgumentException, TemplateException
from e2b.sandbox.filesystem.filesystem import (
    EntryInfo,
    FileStreamReader,
    SyncWriteEntry,
    WriteEntry,
    WriteInfo,
    map_entry_info,
    map_file_type,
    validate_metadata,
)
from e2b.sandbox_sync.filesystem.filesystem import (
    _FILESYSTEM_HTTP_ERROR_MAP,
    _FILESYSTEM_RPC_ERROR_MAP,
    Filesystem,
)
from packaging.version import Version
from protobuf.wkt import Timestamp

from tests.e2b_standin.commands import Unserved
from tests.e2b_standin.containers import DEFAULT_USER, SandboxContainer

__all__ = ["StandInFilesystem"]

_HELPER = (Path(__file__).parent / "_helper.py").read_text()
_TYPES = {"file": filesystem_pb.FileType.FILE, "dir": filesystem_pb.FileType.DIRECTORY}


class _Failure(Exception):
    """envd's answer to a failed call: an HTTP status (int) or a Connect code (str), and a message."""

    def __init__(self, code: Union[int, str], message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, io.IOBase) or hasattr(data, "read"):
        content = data.read()
        return content.encode() if isinstance(content, str) else bytes(content)
    return b"".join(bytes(chunk) for chunk in data)


def _pb_entry(raw: Dict[str, Any]) -> filesystem_pb.EntryInfo:
    """The helper's entry as envd's protobuf ``EntryInfo`` (the SDK maps it with its own function)."""
    return filesystem_pb.EntryInfo(
        name=raw["name"],
        type=_TYPES.get(raw["type"], filesystem_pb.FileType.UNSPECIFIED),
        path=raw["path"],
        size=raw["size"],
        mode=raw["mode"],
        permissions=raw["permissions"],
        owner=raw["owner"],
        group=raw["group"],
        modified_time=Timestamp(seconds=raw["mtime_ns"] // 10**9, nanos=raw["mtime_ns"] % 10**9),
        symlink_target=raw["symlink_target"],
        is_symlink=raw["is_symlink"],
    )


def _entry(raw: Dict[str, Any]) -> EntryInfo:
    mapped: EntryInfo = map_entry_info(_pb_entry(raw))
    return mapped


class StandInFilesystem(Filesystem):
    """The SDK's ``Filesystem`` with its methods run in the stand-in sandbox's container."""

    def __init__(self, target: SandboxContainer, envd_version: Version, connection_config: ConnectionConfig) -> None:
        # Not the SDK's __init__: it builds envd clients for a host that does not exist here.
        self._target = target
        self._envd_version = envd_version
        self._connection_config = connection_config
        self._rpc = cast(Any, Unserved("envd's filesystem service"))
        self._envd_api = self._envd_api_download = self._envd_api_streaming = cast(Any, Unserved("envd's HTTP API"))
        self._envd_health_api = cast(Any, Unserved("envd's health probe"))

    def _standin_call(self, op: str, user: Optional[str], *args: str, data: Optional[bytes] = None) -> bytes:
        """Run the helper's ``op``; its output, or ``_Failure`` as envd would answer."""
        container_id = self._target.running_id()
        if container_id is None:
            raise _Failure("gone", self._target.gone_message)
        argv = ["python3", "-c", _HELPER, op, user or DEFAULT_USER, *args]
        done = self._target.run(container_id, argv, stdin=data)
        if done.returncode == 3:
            failure = json.loads(done.stderr)
            raise _Failure(failure["code"], failure["message"])
        if done.returncode != 0:
            if self._target.state() != "running":
                raise _Failure("gone", self._target.gone_message)
            raise _Failure("unknown", f"the stand-in's file helper failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    @staticmethod
    def _standin_http_error(failure: _Failure) -> Exception:
        status = 502 if failure.code == "gone" else failure.code if isinstance(failure.code, int) else 500
        mapped: Exception = format_envd_api_exception(status, failure.message, cast(Any, _FILESYSTEM_HTTP_ERROR_MAP))
        return mapped

    @staticmethod
    def _standin_rpc_error(failure: _Failure) -> Exception:
        code = Code.UNAVAILABLE if failure.code == "gone" else Code(failure.code)
        error_map = cast(Any, _FILESYSTEM_RPC_ERROR_MAP)
        mapped: Exception = handle_rpc_exception(ConnectError(code, failure.message), error_map)
        return mapped

    def read(  # type: ignore[no-untyped-def]
        self,
        path: str,
        format: Literal["text", "bytes", "stream"] = "text",
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
        gzip: bool = False,
        stream_idle_timeout: Optional[float] = None,
    ):
        try:
            content = self._standin_call("read", user, path)
        except _Failure as failure:
            raise self._standin_http_error(failure) from None
        if format == "text":
            return content.decode("utf-8", errors="replace")  # what httpx's Response.text gives envd's answer
        if format == "bytes":
            return bytearray(content)
        return FileStreamReader(httpx.Response(200, content=content))  # whole, not streamed

    def write_files(
        self,
        files: Sequence[Union[WriteEntry, SyncWriteEntry]],
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
        gzip: bool = False,
        use_octet_stream: Optional[bool] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> List[WriteInfo]:
        if len(files) == 0:
            return []
        validate_metadata(metadata)
        if metadata and self._envd_version < ENVD_FILE_METADATA:
            raise TemplateException("File metadata requires envd 0.6.2 or later.")
        if metadata:
            raise NotImplementedError("the E2B stand-in does not keep file metadata")
        if gzip and use_octet_stream is False:
            raise InvalidArgumentException(
                "`gzip` requires the octet-stream upload and can't be combined with `use_octet_stream=False`."
            )
        written: List[WriteInfo] = []
        for file in files:
            try:
                out = self._standin_call("write", user, file["path"], data=_to_bytes(file["data"]))
            except _Failure as failure:
                raise self._standin_http_error(failure) from None
            written += [WriteInfo.from_dict(entry) for entry in json.loads(out)]
        return written

    def list(
        self,
        path: str,
        depth: Optional[int] = 1,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> List[EntryInfo]:
        if depth is not None and depth < 1:
            raise InvalidArgumentException("depth should be at least 1")
        try:
            raw = json.loads(self._standin_call("list", user, path, str(depth or 1)))
        except _Failure as failure:
            raise self._standin_rpc_error(failure) from None
        # As the SDK does: entries of a type it does not know (devices, sockets...) are left out.
        infos = [_pb_entry(item) for item in raw]
        return [map_entry_info(info) for info in infos if map_file_type(info.type)]

    def exists(
        self,
        path: str,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> bool:
        try:
            self._standin_call("stat", user, path)
        except _Failure as failure:
            if failure.code == "not_found":
                return False
            raise self._standin_rpc_error(failure) from None
        return True

    def get_info(
        self,
        path: str,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> EntryInfo:
        try:
            return _entry(json.loads(self._standin_call("stat", user, path)))
        except _Failure as failure:
            raise self._standin_rpc_error(failure) from None

    def remove(
        self,
        path: str,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> None:
        try:
            self._standin_call("remove", user, path)
        except _Failure as failure:
            raise self._standin_rpc_error(failure) from None

    def rename(
        self,
        old_path: str,
        new_path: str,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> EntryInfo:
        try:
            return _entry(json.loads(self._standin_call("rename", user, old_path, new_path)))
        except _Failure as failure:
            raise self._standin_rpc_error(failure) from None

    def make_dir(
        self,
        path: str,
        user: Optional[Username] = None,
        request_timeout: Optional[float] = None,
    ) -> bool:
        try:
            self._standin_call("mkdir", user, path)
        except _Failure as failure:
            if failure.code == "already_exists":
                return False
            raise self._standin_rpc_error(failure) from None
        return True
