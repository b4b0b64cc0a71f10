"""The runtime's version, as installed (or the source tree's when not installed)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("agent-workspaces")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"
