"""The output's Delta Lake tables: commits exactly once per chunk, snapshots for readers, and
maintenance (compact, retain, vacuum, history, restore). No Ray here.

The names below load on first use, so that commands which never touch a table (`export`,
`lake`) do not load delta-rs."""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"ChunkCommit": "tableset", "Shape": "tableset", "TableError": "tableset", "TableSet": "tableset",
           "TableLocation": "location"}
__all__ = ["ChunkCommit", "Shape", "TableError", "TableLocation", "TableSet"]  # the keys of _PUBLIC


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"obsrvr_ray.table.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'obsrvr_ray.table' has no attribute {name!r}")
