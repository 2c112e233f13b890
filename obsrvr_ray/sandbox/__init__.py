"""The sandbox network: ledgers of our own for demos, scale tests and error cases, and a
getLedgers server (`rpc_server`) to serve them.

The generator applies real signed transactions (stellar-sdk, sandbox passphrase) to an
in-memory ledger state and records them the way a protocol-26 validator does: LedgerCloseMeta
v2, a two-phase GeneralizedTransactionSet, fee processing, TransactionMetaV4 with ledger-entry
changes and CAP-67 events, and a hash-chained header.

Its modules, one concern each: `state` (entries and write sets), `ops` (one module per
operation kind), `transactions` (fees, sequence numbers, results), `events` (CAP-67), `close`
(transaction set, header, close meta), `scenario` (which transactions to submit), `generator`
(the public API).
"""

from obsrvr_ray.sandbox.generator import (
    DEFAULT_CLOSE_TIME,
    DEFAULT_TXS_PER_LEDGER,
    LEDGER_INTERVAL,
    SandboxNetwork,
    generate_ledgers,
)

__all__ = ["DEFAULT_CLOSE_TIME", "DEFAULT_TXS_PER_LEDGER", "LEDGER_INTERVAL", "SandboxNetwork", "generate_ledgers"]
