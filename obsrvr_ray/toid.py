"""TOIDs: the 64-bit ids stellar-etl and Horizon give ledgers, transactions and operations.

ledger sequence (32 bits) | transaction index (20 bits, 1-based) | operation index (12 bits, 1-based)
"""

from __future__ import annotations


def toid(ledger: int, tx_index: int = 0, op_index: int = 0) -> int:
    return (ledger << 32) | (tx_index << 12) | op_index
