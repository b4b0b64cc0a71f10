"""The guest's root filesystem, built once per image, and each VM's data drive.

``Rootfs(cache_dir).ensure(image)`` turns a local Docker image into a read-only ext4 image
shared by every VM of that image: the image's files (``docker export`` of a created, never
started container), ``/sbin/workspace-init`` (``guest_init.py``) and empty mountpoints,
written by ``mkfs.ext4 -d`` without mounting anything. The cache key is the image id and
a hash of the init, so a rebuilt image or a changed init makes a new entry; ``<key>.ext4``
appears by an atomic rename, beside ``<key>.json`` (what it was built from), and a lock
file per key makes concurrent callers build it once.

``make_data_drive`` makes the per-VM, read-write ``/dev/vdb``: a sparse ext4 file of the
workspace's disk size holding ``/.agent-workspaces/guest.json``, the guest's settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from runtime.errors import BadRequest, NotFound, ProviderUnavailable
from runtime.providers.docker.connection import DockerConnection
from runtime.providers.firecracker.tools import run_tool

__all__ = ["GUEST_INIT", "MIN_DATA_BYTES", "Rootfs", "make_data_drive"]

GUEST_INIT = Path(__file__).resolve().with_name("guest_init.py")
"""The guest's PID 1, installed as ``/sbin/workspace-init``."""

MIN_DATA_BYTES = 8 << 20
"""The smallest data drive: below this ext4 has no room for a journal and the overlay."""

MOUNTPOINTS = ("proc", "sys", "dev", "run", "tmp", "workspace", "mnt")
_PYTHON = "usr/bin/python3"
_BUILD_LABEL = "agent-workspaces.rootfs-build"
_BLOCK = 4096
_INODE_SIZE = 256
_COMMAND_TIMEOUT_S = 600.0


class Rootfs:
    """Root filesystems by image, cached under ``cache_dir``; safe across threads and processes.

    Args:
        cache_dir: Where ``<key>.ext4``, ``<key>.json`` and ``<key>.lock`` live.
        init_path: The guest init to install as ``/sbin/workspace-init``.
        docker: The Docker daemon holding the images (default: from the environment).
    """

    def __init__(
        self, cache_dir: Path, init_path: Path = GUEST_INIT, *, docker: DockerConnection | None = None
    ) -> None:
        self.cache_dir = cache_dir
        self.init_path = init_path
        self._docker = docker or DockerConnection()

    def ensure(self, image: str) -> Path:
        """The rootfs of ``image``, built if it is not cached yet.

        Raises:
            BadRequest: The image is not here, or it has no ``/usr/bin/python3``.
            ProviderUnavailable: Docker or ``mkfs.ext4`` failed.
        """
        image_id, key = self._key(image)
        target = self.cache_dir / f"{key}.ext4"
        if target.is_file():
            return target
        with self._locked(key):
            if target.is_file():  # built by whoever held the lock before us
                return target
            return self._build(image, image_id, key)

    def build(self, image: str) -> Path:
        """Build the rootfs of ``image`` again, replacing a cached one (same errors as ``ensure``)."""
        image_id, key = self._key(image)
        with self._locked(key):
            return self._build(image, image_id, key)

    def image_env(self, image: str) -> dict[str, str]:
        """The image's ``ENV``, for the guest's agent (a container would get it from Docker)."""
        docker = self._docker
        with docker.errors(f"inspect image {image}"):
            config = docker.client().images.get(image).attrs.get("Config") or {}
        pairs = (entry.partition("=") for entry in config.get("Env") or [])
        return {name: value for name, _, value in pairs if name}

    def entries(self) -> list[dict[str, Any]]:
        """What the cache holds: each sidecar's fields plus ``path``, oldest first."""
        found = []
        for sidecar in sorted(self.cache_dir.glob("*.json")):
            image = sidecar.with_suffix(".ext4")
            with contextlib.suppress(OSError, ValueError):
                if image.is_file():
                    found.append({**json.loads(sidecar.read_text()), "path": str(image)})
        return sorted(found, key=lambda entry: entry.get("built_at", 0))

    def prune(self, keep: Collection[Path] = ()) -> list[Path]:
        """Remove the cached images not in ``keep``, with their leftovers; a key being built is left alone.

        A running VM keeps its open image: the file goes, its blocks stay until the VM ends.
        Lock files stay: a caller may be waiting on one.

        Returns:
            The images removed.
        """
        kept = {path.resolve() for path in keep}
        removed = []
        for lock_path in sorted(self.cache_dir.glob("*.lock")):
            key, image = lock_path.stem, lock_path.with_suffix(".ext4")
            with open(lock_path, "a+b") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if image.resolve() in kept:
                    continue
                shutil.rmtree(self.cache_dir / f".build-{key}", ignore_errors=True)
                (self.cache_dir / f".{key}.ext4.tmp").unlink(missing_ok=True)
                lock_path.with_suffix(".json").unlink(missing_ok=True)
                if image.exists():
                    image.unlink()
                    removed.append(image)
        return removed

    # ------------------------------------------------------------------ internals

    def _key(self, image: str) -> tuple[str, str]:
        docker = self._docker
        with docker.errors(f"inspect image {image}"):
            image_id: str = docker.client().images.get(image).id
        try:
            init_hash = hashlib.sha256(self.init_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ProviderUnavailable(f"the guest init {self.init_path} is not readable: {exc}") from exc
        return image_id, f"{image_id.removeprefix('sha256:')[:24]}-{init_hash[:12]}"

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.cache_dir / f"{key}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # closing the file releases the lock

    def _build(self, image: str, image_id: str, key: str) -> Path:
        target = self.cache_dir / f"{key}.ext4"
        partial = self.cache_dir / f".{key}.ext4.tmp"
        # Fixed names: what a killed build left behind is removed by the next build of that key.
        tree = self.cache_dir / f".build-{key}"
        container_name = f"agent-workspaces-rootfs-{key}"
        started = time.monotonic()
        try:
            shutil.rmtree(tree, ignore_errors=True)
            partial.unlink(missing_ok=True)
            tree.mkdir(mode=0o755)
            self._export(image, image_id, container_name, tree)
            _add_guest_files(tree, self.init_path)
            if not _is_executable_inside(tree, _PYTHON):
                raise BadRequest(f"image {image} has no /usr/bin/python3: a Firecracker guest's init and agent need it")
            content, inodes = _tree_usage(tree)
            # Headroom for ext4's own metadata only: the image is read-only, so no journal either.
            size = -(-(content + content // 20 + inodes * _INODE_SIZE + (16 << 20)) // (1 << 20)) << 20  # whole MiB
            _run(
                ["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-O", "^has_journal", "-b", str(_BLOCK), "-m", "0",
                 "-I", str(_INODE_SIZE), "-N", str(inodes + 1024), "-d", str(tree), "-E", "root_owner=0:0",
                 str(partial), f"{size // 1024}k"],
                f"mkfs.ext4 of the rootfs of {image}",
            )  # fmt: skip
            sidecar = {
                "image": image,
                "image_id": image_id,
                "init_sha256": hashlib.sha256(self.init_path.read_bytes()).hexdigest(),
                "built_at": time.time(),
                "build_s": round(time.monotonic() - started, 1),
                "size": size,
                "content_bytes": content,
            }
            (self.cache_dir / f".{key}.json.tmp").write_text(json.dumps(sidecar, indent=2))
            os.replace(self.cache_dir / f".{key}.json.tmp", self.cache_dir / f"{key}.json")
            os.replace(partial, target)
            return target
        finally:
            partial.unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)

    def _export(self, image: str, image_id: str, name: str, tree: Path) -> None:
        """The image's files into ``tree``, through a container that is created and never started."""
        docker = self._docker
        client = docker.client()
        with contextlib.suppress(NotFound), docker.errors(f"remove the leftover build container {name}"):
            client.containers.get(name).remove(force=True)
        with docker.errors(f"create a container of {image} to export it"):
            container = client.containers.create(
                image_id, command=["/sbin/workspace-init"], name=name, labels={_BUILD_LABEL: image},
                network_disabled=True,
            )  # fmt: skip
        try:
            with docker.errors(f"export the files of {image}"):
                stream = cast("BinaryIO", _Chunks(container.export(chunk_size=1 << 20)))
                try:
                    with tarfile.open(fileobj=stream, mode="r|") as archive:
                        archive.extractall(tree, numeric_owner=True, filter=_SafeMembers())
                except tarfile.FilterError as exc:
                    raise BadRequest(f"image {image} has a file that would land outside its root: {exc}") from exc
                except (tarfile.TarError, OSError) as exc:  # this host's disk, not Docker
                    raise ProviderUnavailable(f"unpacking the files of {image} failed: {exc}") from exc
        finally:
            with docker.errors(f"remove the build container {name}"):
                container.remove(force=True)


class _Chunks:
    """Docker's export stream as the file ``tarfile``'s stream mode reads: ``read`` only, short reads welcome."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        return next(self._chunks, b"")


class _SafeMembers:
    """A ``tarfile`` filter that keeps owners, modes and device nodes but never writes outside the tree.

    An image is not trusted and we extract as root: a member reached through a symlink the
    archive made earlier (``etc -> /`` then ``etc/passwd``), a ``..`` or a hard link to a
    symlink could otherwise touch the host. Docker's exports never need any of those.
    """

    def __init__(self) -> None:
        self._symlinks: set[str] = set()
        self._seen: set[str] = set()

    def __call__(self, member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo | None:
        name = self._check(member.name)
        if name in ("", ".", ".dockerenv"):
            return None  # the root is made by us; .dockerenv would tell the guest it is a container
        if member.islnk():
            target = self._check(member.linkname)
            if target in self._symlinks:
                raise tarfile.FilterError(f"hard link {name!r} to the symlink {target!r}")
            if target not in self._seen:  # e.g. an absolute name: the host's file
                raise tarfile.FilterError(f"hard link {name!r} to {member.linkname[:80]!r}, not a file of the image")
            # tarfile joins a hard link's target to the tree as given: an absolute one would be the host's
            member = member.replace(linkname=target, deep=False)
        self._seen.add(name)
        if member.issym():
            self._symlinks.add(name)
        else:
            self._symlinks.discard(name)
        return member

    def _check(self, path: str) -> str:
        name = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
        parts = name.split("/")
        if ".." in parts:
            raise tarfile.FilterError(f"{path!r} leaves the image's root")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self._symlinks:
                raise tarfile.FilterError(f"{path!r} lies beyond a symlink")
        return name


def make_data_drive(path: Path, size_bytes: int, guest: Mapping[str, Any]) -> None:
    """Make a VM's data drive: a sparse ext4 file labelled ``workspace`` holding the guest's settings.

    Args:
        path: The file to create (replaced if present).
        size_bytes: Its size: the workspace's disk limit.
        guest: The guest's settings, written as ``/.agent-workspaces/guest.json`` (mode 0600).

    Raises:
        BadRequest: ``size_bytes`` is below ``MIN_DATA_BYTES``.
        ProviderUnavailable: ``mkfs.ext4`` failed (its message included), or the file could not be written.
    """
    if size_bytes < MIN_DATA_BYTES:
        raise BadRequest(f"a disk of {size_bytes} bytes is too small for ext4: at least {MIN_DATA_BYTES >> 20} MiB")
    staging = path.with_name(f".{path.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / ".agent-workspaces").mkdir(parents=True, mode=0o700)
        settings = staging / ".agent-workspaces" / "guest.json"
        descriptor = os.open(settings, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(dict(guest), file)
        staging.chmod(0o755)
        path.unlink(missing_ok=True)
        with open(path, "wb") as file:
            file.truncate(size_bytes)  # sparse: blocks are allocated as the guest writes
        # Lazy inode tables and journal, no discard: a large drive is made in milliseconds;
        # the guest's kernel initialises the tables in the background.
        _run(
            ["mkfs.ext4", "-q", "-F", "-L", "workspace", "-m", "0", "-d", str(staging),
             "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0", str(path)],
            f"mkfs.ext4 of the data drive {path}",
        )  # fmt: skip
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ProviderUnavailable(f"making the data drive {path} failed: {exc}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------- helpers


def _add_guest_files(tree: Path, init_path: Path) -> None:
    """``/sbin/workspace-init`` and the mountpoints (an image may have any of them, as anything)."""
    for name in MOUNTPOINTS:
        mountpoint = tree / name
        if mountpoint.is_symlink() or (mountpoint.exists() and not mountpoint.is_dir()):
            mountpoint.unlink()
        mountpoint.mkdir(exist_ok=True)
        mountpoint.chmod(0o1777 if name == "tmp" else 0o755)
        os.chown(mountpoint, 0, 0)
    sbin = _inside(tree, "sbin")  # usr-merged images: sbin -> usr/sbin
    sbin.mkdir(mode=0o755, parents=True, exist_ok=True)
    init = sbin / "workspace-init"
    init.unlink(missing_ok=True)
    shutil.copyfile(init_path, init)
    init.chmod(0o755)
    os.chown(init, 0, 0)
    tree.chmod(0o755)


def _inside(tree: Path, path: str) -> Path:
    """Where ``path`` leads when ``tree`` is the root: its symlinks followed inside ``tree``, never out."""
    parts = path.split("/")
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved[:-1]
            continue
        here = tree.joinpath(*resolved, part)
        if here.is_symlink():
            if hops == 40:  # a loop, or a chain meant to outlast the check: never follow it out
                raise BadRequest(f"/{path} in the image goes through more than 40 symbolic links")
            hops += 1
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            parts = target.split("/") + parts
            continue
        resolved.append(part)
    return tree.joinpath(*resolved)


def _is_executable_inside(tree: Path, path: str) -> bool:
    """Whether ``path`` is an executable regular file when ``tree`` is the root."""
    try:
        info = _inside(tree, path).lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111)


def _tree_usage(tree: Path) -> tuple[int, int]:
    """Bytes of blocks the tree's files and directories need in ext4, and its inode count."""
    seen: set[int] = set()
    blocks = 0
    for directory, dirnames, filenames in os.walk(tree):
        # A directory's entries: about 8 bytes plus the name each, in 4 KiB blocks.
        names = dirnames + filenames
        blocks += 1 + sum(8 + len(name) for name in names) // _BLOCK
        seen.add(os.lstat(directory).st_ino)
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISDIR(info.st_mode) or info.st_ino in seen:  # directories count as they are walked
                continue  # a hard link's data is counted once
            seen.add(info.st_ino)
            if stat.S_ISREG(info.st_mode):
                blocks += -(-info.st_size // _BLOCK) + info.st_size // (_BLOCK * 340)  # data + extent blocks
            elif stat.S_ISLNK(info.st_mode) and info.st_size > 59:
                blocks += 1  # short targets live in the inode
    return blocks * _BLOCK, len(seen)


def _run(argv: list[str], what: str) -> None:
    run_tool(argv, what, install="install e2fsprogs", timeout_s=_COMMAND_TIMEOUT_S)
