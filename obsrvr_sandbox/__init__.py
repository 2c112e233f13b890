"""The sandbox network: ledgers of our own for demos, scale tests and error cases. A package of
its own beside the runtime (`obsrvr_ray`), in the same distribution: it uses the runtime (the
getLedgers server, the lake writer, the network ids), the runtime never imports it.

The generator applies real signed transactions (stellar-sdk, sandbox passphrase) to an
in-memory ledger state and records them the way a protocol-26 validator does: LedgerCloseMeta
v2, a two-phase GeneralizedTransactionSet, fee processing, TransactionMetaV4 with ledger-entry
changes and CAP-67 events, and a hash-chained header.

Its ledgers carry every kind of token movement the token-transfer rules know: payments and
path payments (through the order book and liquidity pools), offers resting and crossing, pool
deposits and withdrawals, claimable balances, clawbacks, revocations that redeem pool shares,
account merges, and Stellar Asset Contract transfers, mints and burns in the Soroban phase,
with resource-fee refunds; each with the events core writes for it.

Its modules, one concern each: `entries` (ledger entries and keys), `entry_xdr` (their XDR),
`addresses` (holders' strkeys), `state` (write sets, id pool, order-book index), `moves` (a
movement of value), `ops` (one module per operation kind; `ops.exchange` crosses offers and
pools), `transactions` (fees, sequence numbers, results), `soroban_fees` (resource fees and
refunds), `events` (CAP-67), `close` (transaction set, header, close meta), `scenario` (which
transactions to submit, one module per concern), `generator` (the public API), `feed` (a
getLedgers server closing a ledger every few seconds; `feed_actor` hosts it in a Ray cluster),
`cli` (`obsrvr-sandbox generate|feed`).
"""

from obsrvr_sandbox.generator import (
    DEFAULT_CLOSE_TIME,
    DEFAULT_TXS_PER_LEDGER,
    LEDGER_INTERVAL,
    SandboxNetwork,
    generate_ledgers,
)

__all__ = ["DEFAULT_CLOSE_TIME", "DEFAULT_TXS_PER_LEDGER", "LEDGER_INTERVAL", "SandboxNetwork", "generate_ledgers"]
