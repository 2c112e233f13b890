"""The output's Delta Lake tables: commits exactly once per chunk, snapshots for readers, and
maintenance (compact, retain, vacuum, history, restore). No Ray here."""

from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import ChunkCommit, Shape, TableError, TableSet

__all__ = ["ChunkCommit", "Shape", "TableError", "TableLocation", "TableSet"]
