"""Token-transfer events (CAP-67 / SEP-41): derived from operations and results, read from the
events core emitted, and reconciled with ledger-entry balance changes. Never imports Ray."""
