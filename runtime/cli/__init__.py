"""The ``workspaces`` command: ``serve`` the runtime, ``doctor`` the host, or drive a runtime as a client."""

from runtime.cli.main import main

__all__ = ["main"]
