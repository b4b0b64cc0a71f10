"""Provider adapters: blocking, thread-safe bridges to isolation backends."""

from runtime.providers.base import Probe, Provider, ProviderBoard, ProviderStatus

__all__ = ["Probe", "Provider", "ProviderBoard", "ProviderStatus"]
