"""GitHub Apps: credentials sealed at rest, installation tokens, and clones that keep no secret.

``store`` keeps each App's private key sealed with AES-256-GCM in the state log;
``tokens`` signs the App's JWT and exchanges it for short-lived installation tokens held
in memory only; ``clone`` runs ``git clone`` inside a workspace with the token handed to
that one git process, and records every use of a credential in the audit trail.
"""

from runtime.github.clone import GitHub, clone_url, redact, web_url
from runtime.github.store import CredentialStore
from runtime.github.tokens import TokenBroker, app_jwt

__all__ = ["CredentialStore", "GitHub", "TokenBroker", "app_jwt", "clone_url", "redact", "web_url"]
