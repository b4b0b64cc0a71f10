"""CredentialsActor: the one writer of GitHub App credentials.

``github_app_set``, ``github_app_delete`` and ``github_key_rotate`` come here, one at a
time, so a rotation never interleaves with a registration. Each is a short write to the
state log (sealed records only); listing and using credentials read the log directly.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.context import ActorContext
from actors.names import CREDENTIALS
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.config.values import aes_key
from runtime.errors import BadRequest, WorkspaceError
from runtime.messages import GithubAppArgs, GithubAppSetArgs, GithubKeyArgs, ManageGithub
from runtime.wire.outbox import Outbox

__all__ = ["CredentialsActor", "credentials_child"]

log = logging.getLogger(__name__)


def credentials_child(ctx: ActorContext) -> ChildSpec:
    """The child spec of the CredentialsActor (permanent)."""
    return child_spec(CREDENTIALS, CredentialsActor, ctx)


class CredentialsActor(ChildActor):
    """Registers, deletes and re-encrypts GitHub App credentials.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext) -> None:
        super().__init__(supervisor, CREDENTIALS)
        self._ctx = ctx
        self._outbox: Outbox | None = None

    def started(self) -> None:
        self._outbox = self._ctx.outbox()

    def stopped(self) -> None:
        if self._outbox is not None:
            self._outbox.close()

    def handle(self, message: Any) -> Any:
        if not isinstance(message, ManageGithub):
            return super().handle(message)
        assert self._outbox is not None
        try:
            result = self._manage(message.args)
        except WorkspaceError as exc:
            self._outbox.fail(message.reply_to, exc)
        else:
            self._outbox.reply(message.reply_to, result)
        return None

    def _manage(self, args: GithubAppSetArgs | GithubAppArgs | GithubKeyArgs) -> Any:
        store, _ = self._ctx.github_apps()
        if isinstance(args, GithubAppSetArgs):
            app = store.set(args)
            log.info("GitHub App %s registered (app_id %d, installation %d)", app.name, app.app_id,
                     app.installation_id)  # fmt: skip
            return app
        if isinstance(args, GithubAppArgs):
            store.delete(args.name)
            log.info("GitHub App %s deleted", args.name)
            return {}
        try:
            key = aes_key(args.key)
        except ValueError:
            raise BadRequest("key is not valid: expected 64 hex digits or the base64 of 32 bytes") from None
        count = store.rotate(key)
        log.warning("GitHub App credentials re-encrypted under a new key (%d record(s)): set "
                    "GITHUB_APP_ENCRYPTION_KEY to it before the next start", count)  # fmt: skip
        return {"rotated": count}
