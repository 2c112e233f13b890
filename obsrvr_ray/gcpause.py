"""Pausing the cyclic garbage collector around allocation-heavy, cycle-free work.

Decoding a ledger and building its rows allocate tens of thousands of small objects that
reference counting frees; none form cycles. With the collector on, each batch of 700
allocations triggers a scan of the young generation, and the growing heap makes older scans
costlier: about half the time of the token-transfer path went to it (measured in
benchmarks/). Pausing it for the duration of one ledger removes that cost.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper
