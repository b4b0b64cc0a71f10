"""Log output: one line per event, as text for people or JSON for machines.

Every line that concerns a workspace names it: in text as part of the message, in JSON
also as its own ``workspace_id`` field (taken from the message when the call did not
pass one with ``extra``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Literal

__all__ = ["JsonFormatter", "LogFormat", "configure"]

LogFormat = Literal["text", "json"]

_WORKSPACE_ID = re.compile(r"\bws_[0-9a-f]{12}\b")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, workspace_id, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        message = record.getMessage()
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        workspace_id = getattr(record, "workspace_id", None)
        if workspace_id is None:
            match = _WORKSPACE_ID.search(message)
            workspace_id = match.group(0) if match else None
        if workspace_id is not None:
            line["workspace_id"] = workspace_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: int | str, fmt: LogFormat = "text") -> None:
    """Send the process's logs to stderr at ``level`` in format ``fmt``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
