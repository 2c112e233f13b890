"""Domain core for ledgers: bytes in, validated ledger objects out. Never imports Ray."""
