"""The E2B SDK's exceptions, translated into the runtime's families at this boundary.

Nothing the SDK (or the HTTP client under it) raises leaves the adapter as anything but
a ``WorkspaceError``:

- ``AuthenticationException`` -> ``ProviderUnavailable`` "E2B rejected the API key"
  (not retryable: the same key will be rejected again);
- ``RateLimitException``, ``ServiceBusyException``, network errors -> retryable
  ``ProviderUnavailable``;
- ``SandboxNotFoundException`` -> ``Conflict`` (``sandbox_gone``: the adapter reports
  it, and the workspace is marked ``failed`` with the reason);
- ``SandboxNotRunningException`` -> retryable ``ProviderUnavailable`` (the adapter connects
  again, which resumes a paused sandbox or finds it gone), ``SandboxUnreachableException``
  -> retryable ``ProviderUnavailable``, other ``TimeoutException`` -> ``Timeout``;
  ``NotEnoughSpaceException`` -> ``Conflict``;
- ``InvalidArgumentException`` / ``TemplateException`` -> ``BadRequest``;
  ``FileNotFoundException`` -> ``NotFound``;
- anything else -> ``ProviderUnavailable`` naming the exception, never ``internal``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
from e2b import (
    AuthenticationException,
    FileNotFoundException,
    InvalidArgumentException,
    NotEnoughSpaceException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TemplateException,
    TimeoutException,
)

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError

__all__ = ["REJECTED_KEY", "sandbox_gone", "sandbox_stopped", "translated"]

REJECTED_KEY = "E2B rejected the API key"


def sandbox_gone(error: WorkspaceError) -> bool:
    """Whether ``error`` says E2B no longer knows the sandbox (killed, or its timeout passed)."""
    cause = error.__cause__
    return isinstance(cause, NotFoundException) and not isinstance(cause, FileNotFoundException)


def sandbox_stopped(error: WorkspaceError) -> bool:
    """Whether ``error`` says the sandbox is not running (paused, or gone): connecting again tells which."""
    return isinstance(error.__cause__, SandboxNotRunningException)


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate whatever the SDK raises while doing ``what`` (e.g. "creating a sandbox")."""
    try:
        yield
    except WorkspaceError:
        raise
    except AuthenticationException as exc:
        raise ProviderUnavailable(f"{REJECTED_KEY} ({what}): {exc}", retryable=False) from exc
    except (RateLimitException, ServiceBusyException) as exc:
        raise ProviderUnavailable(f"E2B is busy ({what}): {_detail(exc)}; retry later", retryable=True) from exc
    except SandboxNotFoundException as exc:
        raise Conflict(f"the workspace's E2B sandbox is gone ({what}): {exc}") from exc
    except FileNotFoundException as exc:
        raise NotFound(f"{what}: {exc}") from exc
    except NotFoundException as exc:  # a sandbox-level 404 the SDK words generically
        raise Conflict(f"the workspace's E2B sandbox is gone ({what}): {exc}") from exc
    except NotEnoughSpaceException as exc:
        raise Conflict(f"the workspace's E2B sandbox has no space left ({what}): {exc}") from exc
    except SandboxNotRunningException as exc:
        raise ProviderUnavailable(
            f"the workspace's E2B sandbox is not running ({what}): {exc}; retry", retryable=True
        ) from exc
    except SandboxUnreachableException as exc:
        raise ProviderUnavailable(f"cannot reach the workspace's E2B sandbox ({what}): {exc}", retryable=True) from exc
    except TimeoutException as exc:
        raise Timeout(f"E2B did not answer in time ({what}): {exc}") from exc
    except (InvalidArgumentException, TemplateException) as exc:
        raise BadRequest(f"E2B refused it ({what}): {exc}") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach the E2B API ({what}): {exc}", retryable=True) from exc
    except SandboxException as exc:
        raise ProviderUnavailable(f"E2B failed ({what}): {_detail(exc)}", retryable=True) from exc
    except Exception as exc:  # the SDK raises bare Exceptions in places (e.g. an empty body)
        raise ProviderUnavailable(f"E2B failed ({what}): {_detail(exc)}", retryable=True) from exc
