"""Small Docker checks for scripts/setup.sh, done with the docker SDK (no CLI needed).

Usage: python scripts/dockerctl.py ping | runtimes | has-image NAME | import TAR NAME [CHANGE...]
Exit status 0 means yes/success; messages go to stderr.
"""

from __future__ import annotations

import sys

import docker
import docker.errors


def main(argv: list[str]) -> int:
    """Run one check; see the module docstring."""
    try:
        client = docker.from_env(version="auto", timeout=300)
    except docker.errors.DockerException as exc:
        print(f"Docker daemon not reachable: {exc}", file=sys.stderr)
        return 1
    command = argv[0] if argv else "ping"
    if command == "ping":
        return 0 if client.ping() else 1
    if command == "runtimes":
        print(" ".join(sorted(client.info().get("Runtimes", {}))))
        return 0
    if command == "has-image":
        try:
            client.images.get(argv[1])
        except docker.errors.ImageNotFound:
            return 1
        return 0
    if command == "import":
        tarball, name, changes = argv[1], argv[2], argv[3:]
        repository, _, tag = name.rpartition(":")
        client.api.import_image_from_file(tarball, repository=repository, tag=tag, changes=changes)
        client.images.get(name)
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
