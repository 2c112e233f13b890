"""Write ledgers as a galexie-layout data lake, and import ledger files of every common form.

The importer is how a handful of ledger files (raw or batched XDR, compressed or not, base64
lines) becomes a lake that the lake source, the RPC test server and S3 uploads all share.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from obsrvr_ray.errors import DecodeError, ObsrvrError
from obsrvr_ray.ledger.decode import peek_sequence, split_batch
from obsrvr_ray.ledger.framing import b64decode, decompress, zstd_compress
from obsrvr_ray.objectstore import ObjectStore
from obsrvr_ray.sources.lake_layout import CONFIG_KEY, LakeConfig

_BASE64_TEXT = re.compile(rb"^[A-Za-z0-9+/=\s]+$")


def encode_batch(start: int, metas: list[bytes]) -> bytes:
    """XDR LedgerCloseMetaBatch of consecutive ledgers starting at `start`."""
    return struct.pack(">III", start, start + len(metas) - 1, len(metas)) + b"".join(metas)


@dataclass
class WriteReport:
    ledgers: int = 0
    objects: int = 0
    first: int | None = None
    last: int | None = None


class LakeWriter:
    """Buffers ledgers into batches of `ledgersPerBatch` and writes each batch object whole."""

    def __init__(self, store: ObjectStore, config: LakeConfig, *, level: int = 3) -> None:
        self.store = store
        self.config = config
        self.level = level
        self.report = WriteReport()

    def write_config(self) -> None:
        self.store.put(CONFIG_KEY, self.config.to_json())

    def write(self, ledgers: Iterable[tuple[int, bytes]]) -> WriteReport:
        """(sequence, LedgerCloseMeta bytes) pairs; every batch must be complete."""
        pending: dict[int, dict[int, bytes]] = {}
        for seq, data in sorted(ledgers, key=lambda p: p[0]):
            b_start, b_end = self.config.batch_range(seq)
            group = pending.setdefault(b_start, {})
            group[seq] = data
            if len(group) == b_end - b_start + 1:
                self._put_batch(b_start, [group[s] for s in range(b_start, b_end + 1)])
                del pending[b_start]
        if pending:
            b_start = min(pending)
            have = sorted(pending[b_start])
            raise ObsrvrError(
                f"incomplete batch starting at {b_start}: ledgersPerBatch={self.config.ledgers_per_batch} "
                f"but only ledgers {have} were given"
            )
        return self.report

    def _put_batch(self, start: int, metas: list[bytes]) -> None:
        body = zstd_compress(encode_batch(start, metas), self.level)
        self.store.put(self.config.batch_key(start), body)
        r = self.report
        r.ledgers += len(metas)
        r.objects += 1
        r.first = start if r.first is None else min(r.first, start)
        end = start + len(metas) - 1
        r.last = end if r.last is None else max(r.last, end)


def read_ledger_file(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(sequence, LedgerCloseMeta bytes) of every ledger in a file of any supported form:
    raw LedgerCloseMeta or LedgerCloseMetaBatch XDR (optionally gzip/zstd compressed), or text
    with one base64 LedgerCloseMeta per line."""
    path = Path(path)
    origin = str(path)
    data = decompress(path.read_bytes(), origin=origin)
    if not data:
        raise DecodeError("empty ledger file", origin=origin)
    if _BASE64_TEXT.match(data[:4096]) and _BASE64_TEXT.match(data):
        for n, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                meta = b64decode(line.strip(), origin=f"{origin}:{n}")
                yield peek_sequence(meta, origin=f"{origin}:{n}"), meta
        return
    (first,) = struct.unpack_from(">I", data, 0)
    if first <= 2:  # a LedgerCloseMeta starts with its version (0, 1 or 2)
        yield peek_sequence(data, origin=origin), data
    else:  # a batch starts with its first ledger sequence
        yield from split_batch(data, origin=origin)


def import_files(paths: Iterable[str | Path], writer: LakeWriter) -> WriteReport:
    ledgers: dict[int, bytes] = {}
    for path in paths:
        for seq, data in read_ledger_file(path):
            ledgers[seq] = data
    writer.write_config()
    return writer.write(ledgers.items())
