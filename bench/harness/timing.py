"""Timing in rounds, so ours, the baseline and the peer take machine noise alike.

``Paths`` maps a series name (``ours``, ``baseline``, ``peer``) to a call returning the
seconds it took (the peer times its own call in its process; ours and the baseline's are
timed here with ``timed``). ``alternate`` runs every path once per step, rotating which
goes first, so none is always the one after another's leftovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Paths", "alternate", "timed", "timer"]

Paths = dict[str, Callable[[], float]]


def timed(call: Callable[[], Any]) -> float:
    """Seconds ``call()`` took."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def timer(call: Callable[[], Any]) -> Callable[[], float]:
    """``call`` as a path: a function returning the seconds it took."""
    return lambda: timed(call)


def alternate(paths: Paths, steps: int, block: int = 1, warmup: int = 0) -> dict[str, list[float]]:
    """Samples per path: ``steps`` steps of ``block`` calls per path, the first path rotating each step.

    ``block`` > 1 keeps a path's calls together (a ``docker exec`` leaves the daemon busy
    for a few ms after it returns, which would otherwise be charged to the next path).
    """
    names = list(paths)
    for name in names:
        for _ in range(warmup):
            paths[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for step in range(steps):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(block):
                samples[name].append(paths[name]())
    return samples
