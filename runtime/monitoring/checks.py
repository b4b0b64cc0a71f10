"""What one ``workspaces doctor`` check found."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Check", "Status"]

Status = Literal["PASS", "WARN", "FAIL"]


class Check(msgspec.Struct, frozen=True):
    """One check's outcome: PASS, WARN or FAIL, what it found, and for WARN and FAIL the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""
