"""Aggregations over token_transfers tables, in Arrow compute, with exact integer amounts."""
