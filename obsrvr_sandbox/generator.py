"""The sandbox network: a deterministic stream of structurally valid protocol-26 ledgers.

`SandboxNetwork` holds the ledger state in memory and closes one ledger per `next_ledger()`
call, so a live demo can keep calling it; `generate_ledgers` is the batch form. The same
arguments always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from stellar_sdk import xdr as X

from obsrvr_ray.ledger.hashing import header_hash
from obsrvr_ray.network import SANDBOX
from obsrvr_sandbox.close import TOTAL_COINS, close_ledger, genesis_header, ledger_info
from obsrvr_sandbox.entries import AccountEntry
from obsrvr_sandbox.keys import derived_actor, root_actor
from obsrvr_sandbox.scenario import Scenario
from obsrvr_sandbox.state import EntryTxn, LedgerState

DEFAULT_CLOSE_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z, close time of the first ledger
LEDGER_INTERVAL = 5  # seconds between closes
DEFAULT_TXS_PER_LEDGER = 12


class SandboxNetwork:
    """Closes sandbox ledgers one at a time, starting at `start` (its parent is a synthetic
    genesis ledger `start - 1` in which the root account holds every coin)."""

    def __init__(
        self,
        *,
        start: int = 2,
        seed: int = 1,
        passphrase: str = SANDBOX,
        close_time: int = DEFAULT_CLOSE_TIME,
        txs_per_ledger: int = DEFAULT_TXS_PER_LEDGER,
    ) -> None:
        if not 2 <= start < 2**31:
            # Ledger 1 is the genesis ledger; new accounts start at sequence number ledger << 32,
            # which must fit an int64.
            raise ValueError(f"start must be in [2, 2**31), got {start}")
        if txs_per_ledger < 1:
            raise ValueError(f"txs_per_ledger must be positive, got {txs_per_ledger}")
        self.passphrase = passphrase
        self.state = LedgerState()
        genesis = EntryTxn(self.state, start - 1)
        genesis.put(AccountEntry(root_actor(passphrase).address, balance=TOTAL_COINS, seq_num=0))
        genesis.commit()
        self._header = genesis_header(start - 1, close_time - LEDGER_INTERVAL, passphrase)
        self._validator = derived_actor(seed, "validator").keypair
        self._scenario = Scenario(seed=seed, passphrase=passphrase, txs_per_ledger=txs_per_ledger)

    @property
    def header(self) -> X.LedgerHeader:
        """Header of the last closed ledger (the genesis header before the first close)."""
        return self._header

    @property
    def sequence(self) -> int:
        return self._header.ledger_seq.uint32

    @property
    def hash(self) -> bytes:
        return header_hash(self._header)

    def next_ledger(self, close_time: int | None = None) -> tuple[int, bytes]:
        """Close the next ledger: (sequence, XDR LedgerCloseMeta).

        `close_time` (Unix seconds) lets a live caller stamp wall-clock time; by default a
        ledger closes LEDGER_INTERVAL after the previous one, and never at or before it.
        """
        previous_close = self._header.scp_value.close_time.time_point.uint64
        if close_time is None:
            close_time = previous_close + LEDGER_INTERVAL
        close_time = max(close_time, previous_close + 1)
        txs = self._scenario.plan(self.state, ledger_info(self._header, close_time, self.passphrase))
        closed = close_ledger(self.state, txs, self._header, close_time, self.passphrase, self._validator)
        self._header = closed.header
        return closed.sequence, closed.close_meta


def generate_ledgers(
    count: int,
    *,
    start: int = 2,
    seed: int = 1,
    passphrase: str = SANDBOX,
    close_time: int = DEFAULT_CLOSE_TIME,
    txs_per_ledger: int = DEFAULT_TXS_PER_LEDGER,
) -> Iterator[tuple[int, bytes]]:
    """`count` consecutive ledgers from `start`, as (sequence, XDR LedgerCloseMeta) pairs."""
    network = SandboxNetwork(
        start=start, seed=seed, passphrase=passphrase, close_time=close_time, txs_per_ledger=txs_per_ledger
    )
    for _ in range(count):
        yield network.next_ledger()
