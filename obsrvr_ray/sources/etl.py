"""Read stellar-etl `export_ledger_transaction` JSON lines as a ledger source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from obsrvr_ray.errors import DecodeError, SourceError
from obsrvr_ray.network import PUBNET
from obsrvr_ray.ranges import Grid
from obsrvr_ray.sources.base import ETL, LedgerRecord


class EtlSource:
    """Lines are grouped by `ledger_sequence`; the file's line order is the apply order."""

    grid = Grid(1)  # read whole, once
    every_ledger = False  # it holds the ledgers it holds
    bulkhead = None  # a local file: no calls to bound

    def __init__(self, path: str | Path, network_passphrase: str | None = None) -> None:
        self.path = Path(path)
        self.description = f"stellar-etl export {self.path}"
        self._passphrase = network_passphrase
        self._ledgers: dict[int, list[bytes]] | None = None
        self._bad_lines: list[LedgerRecord] = []

    @property
    def network_passphrase(self) -> str | None:
        # stellar-etl exports do not record their network; pubnet is what they almost always are.
        return self._passphrase or PUBNET

    def _load(self) -> dict[int, list[bytes]]:
        if self._ledgers is None:
            try:
                text = self.path.read_bytes()
            except OSError as exc:
                raise SourceError(f"cannot read: {exc}", origin=str(self.path)) from exc
            ledgers: dict[int, list[bytes]] = {}
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                origin = f"{self.path}:{n}"
                try:
                    seq = int(json.loads(line)["ledger_sequence"])
                except (ValueError, KeyError, TypeError) as exc:
                    err = DecodeError(f"unreadable row: {type(exc).__name__}: {exc}", origin=origin)
                    self._bad_lines.append(LedgerRecord(None, origin, error=err))
                    continue
                ledgers.setdefault(seq, []).append(line)
            self._ledgers = ledgers
        return self._ledgers

    def earliest(self) -> int:
        """The file's first ledger; a file without any ledger row is refused."""
        ledgers = self._load()
        if not ledgers:
            raise SourceError("no rows", origin=str(self.path))
        return min(ledgers)

    def latest(self) -> int | None:
        return max(self._load(), default=None)

    def records(self, start: int, end: int | None) -> Iterator[LedgerRecord]:
        ledgers = self._load()
        yield from self._bad_lines
        last = max(ledgers, default=start) if end is None else end
        for seq in sorted(s for s in ledgers if start <= s <= last):
            yield LedgerRecord(seq, str(self.path), data=b"\n".join(ledgers[seq]), kind=ETL)

    def close(self) -> None:
        return None
