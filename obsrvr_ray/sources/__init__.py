"""Ledger sources: the galexie data lake (local or S3), Stellar RPC, stellar-etl exports."""
