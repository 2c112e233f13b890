"""What every rule needs to know about the transaction it is reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from stellar_sdk import xdr as X

from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.accounts import base_account, muxed_address
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.ledger.results import operation_results, successful
from obsrvr_ray.ttp.assets import Asset, sac_contract_strkey


@dataclass
class TxContext:
    ledger: Ledger
    tx: LedgerTransaction
    passphrase: str
    skipped: list = field(default_factory=list)  # Skipped records the rules add while reading
    # True: each claim atom's pair in core's order (taker->seller first) rather than stellar/go's,
    # so that the derived view can be compared with core's events in order
    core_claim_order: bool = False

    def __post_init__(self) -> None:
        # read by every event of the transaction: plain attributes, set once
        self.tx_hash = self.tx.hash.hex()
        self.index = self.tx.index
        self.successful = successful(self.tx.result.result)

    @cached_property
    def protocol(self) -> int:
        return self.ledger.protocol_version

    @cached_property
    def is_soroban(self) -> bool:
        return E.soroban_data(self.tx.envelope) is not None

    @cached_property
    def operations(self) -> list[X.Operation]:
        return E.operations(self.tx.envelope)

    @cached_property
    def op_results(self) -> list[X.OperationResult]:
        return operation_results(self.tx.result.result) or []

    def op_source(self, op: X.Operation) -> str:
        """The operation's source as written (G or M)."""
        return muxed_address(E.operation_source(op, self.tx.envelope))

    def op_source_account(self, op: X.Operation) -> str:
        return base_account(E.operation_source(op, self.tx.envelope))

    def op_changes(self, index: int) -> list[X.LedgerEntryChange]:
        return M.operation_changes(self.tx.meta, index)

    def sac(self, asset: Asset) -> str:
        return sac_contract_strkey(asset, self.passphrase)

    def common(self, op_index: int | None) -> dict:
        """Event fields that locate it: tx index and hash, 1-based operation index."""
        return {"tx_index": self.index, "tx_hash": self.tx_hash, "op_index": op_index}
