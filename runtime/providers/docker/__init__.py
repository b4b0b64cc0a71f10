"""The ``gvisor`` provider: Docker containers under runsc (gVisor), or runc as fallback.

``provider`` is the lifecycle (containers, volumes, the isolated network, inventory,
measurements), ``hardening`` the capabilities, privileges and writable paths of each
container, ``connection`` the daemon and its error translation, ``commands`` the
``docker exec`` fallback and agent start, ``exec_stream`` one attached exec with
deadlines, ``events`` Docker's event stream.
"""

from runtime.providers.docker.provider import ICC_OPTION, MANAGED_NETWORK, PIDS_LIMIT, DockerProvider

__all__ = ["ICC_OPTION", "MANAGED_NETWORK", "PIDS_LIMIT", "DockerProvider"]
