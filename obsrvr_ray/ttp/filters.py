"""Filters on token_transfers tables (event types, assets, accounts), in Arrow compute."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ttp.events import KINDS


@dataclass(frozen=True)
class EventFilter:
    """Empty lists mean no restriction. Assets are written 'native', 'CODE:ISSUER', 'CODE'
    (any issuer) or a token contract id (C...); accounts match `from` or `to`."""

    event_types: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.event_types) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown event types {sorted(unknown)}; known: {', '.join(KINDS)}")

    @classmethod
    def of(cls, event_types: Iterable[str] = (), assets: Iterable[str] = (),
           accounts: Iterable[str] = ()) -> EventFilter:
        return cls(tuple(event_types), tuple(assets), tuple(accounts))

    @property
    def active(self) -> bool:
        return bool(self.event_types or self.assets or self.accounts)

    def mask(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        keep = pa.array([True] * table.num_rows, pa.bool_())
        if self.event_types:
            keep = pc.and_(keep, pc.is_in(table["event_topic"], pa.array(self.event_types)))
        if self.assets:
            keep = pc.and_(keep, self._asset_mask(table))
        if self.accounts:
            wanted = pa.array(self.accounts)
            either = pc.or_(pc.is_in(table["from"], wanted), pc.is_in(table["to"], wanted))
            keep = pc.and_(keep, pc.fill_null(either, False))
        return keep

    def _asset_mask(self, table: pa.Table) -> pa.Array:
        native = [a for a in self.assets if a.lower() == "native"]
        contracts = [a for a in self.assets if a.startswith("C") and len(a) == 56]
        pairs = [a for a in self.assets if ":" in a and not a.startswith("credit_")]
        etl_names = [a for a in self.assets if a.startswith("credit_")]
        codes = [a for a in self.assets if a not in native + contracts + pairs + etl_names]
        code_issuer = pc.binary_join_element_wise(table["asset_code"], table["asset_issuer"], ":")
        parts = [pc.is_in(table["contract_id"], pa.array(contracts or [""]))]
        if native:
            parts.append(pc.equal(table["asset"], "native"))
        if pairs:
            parts.append(pc.is_in(code_issuer, pa.array(pairs)))
        if etl_names:
            parts.append(pc.is_in(table["asset"], pa.array(etl_names)))
        if codes:
            parts.append(pc.is_in(table["asset_code"], pa.array(codes)))
        out = parts[0]
        for p in parts[1:]:
            out = pc.or_(out, p)
        return pc.fill_null(out, False)

    def apply(self, table: pa.Table) -> pa.Table:
        return table.filter(self.mask(table)) if self.active else table
