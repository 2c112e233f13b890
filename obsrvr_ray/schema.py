"""Arrow schemas of every table the project writes.

Column names and meanings follow stellar-etl's exports (Hubble `history_ledgers`,
`history_transactions`, `token_transfers`) so existing SQL runs unchanged; columns stellar-etl
lacks are listed after its own. Integers are signed 64-bit (Spark and BigQuery have no
unsigned types); times are UTC timestamps.
"""

from __future__ import annotations

import pyarrow as pa

# The output's table names, defined here once (stellar-etl's names, so existing SQL runs unchanged).
LEDGERS_TABLE, TRANSACTIONS_TABLE, TRANSFERS_TABLE = "ledgers", "transactions", "token_transfers"

TS = pa.timestamp("us", tz="UTC")  # Parquet has no second unit; microseconds as in BigQuery
I64 = pa.int64()
STR = pa.string()
BOOL = pa.bool_()


def list_of(item: pa.DataType) -> pa.DataType:
    """Lists named as Parquet names them, so a table read back equals the one written."""
    return pa.list_(pa.field("element", item))


LEDGERS = pa.schema(
    [
        ("sequence", I64),
        ("ledger_hash", STR),
        ("previous_ledger_hash", STR),
        ("transaction_count", I64),  # successful transactions only, as stellar-etl counts them
        ("operation_count", I64),  # operations of successful transactions
        ("successful_transaction_count", I64),
        ("failed_transaction_count", I64),
        ("tx_set_operation_count", STR),  # every operation in the set; a string in stellar-etl
        ("closed_at", TS),
        ("id", I64),
        ("total_coins", I64),
        ("fee_pool", I64),
        ("base_fee", I64),
        ("base_reserve", I64),
        ("max_tx_set_size", I64),
        ("protocol_version", I64),
        ("ledger_header", STR),
        ("soroban_fee_write_1kb", I64),
        ("node_id", STR),
        ("signature", STR),
        ("total_byte_size_of_bucket_list", I64),
        ("total_byte_size_of_live_soroban_state", I64),
        ("evicted_ledger_keys_type", list_of(STR)),
        ("evicted_ledger_keys_hash", list_of(STR)),
        # beyond stellar-etl
        ("close_meta_version", pa.int32()),  # null when rebuilt from a stellar-etl export
        ("bucket_list_hash", STR),
        ("tx_set_result_hash", STR),
    ]
)

TRANSACTIONS = pa.schema(
    [
        ("transaction_hash", STR),
        ("ledger_sequence", I64),
        ("account", STR),
        ("account_muxed", STR),
        ("account_sequence", I64),
        ("max_fee", I64),
        ("fee_charged", I64),
        ("operation_count", I64),
        ("tx_envelope", STR),
        ("tx_result", STR),
        ("tx_meta", STR),
        ("tx_fee_meta", STR),
        ("created_at", TS),
        ("memo_type", STR),
        ("memo", STR),
        ("time_bounds", STR),
        ("successful", BOOL),
        ("id", I64),
        ("fee_account", STR),
        ("fee_account_muxed", STR),
        ("inner_transaction_hash", STR),
        ("new_max_fee", I64),
        ("ledger_bounds", STR),
        ("min_account_sequence", I64),
        ("min_account_sequence_age", I64),
        ("min_account_sequence_ledger_gap", I64),
        ("extra_signers", list_of(STR)),
        ("closed_at", TS),
        ("resource_fee", I64),
        ("soroban_resources_instructions", I64),
        ("soroban_resources_read_bytes", I64),
        ("soroban_resources_disk_read_bytes", I64),
        ("soroban_resources_write_bytes", I64),
        ("soroban_resources_archived_entries", list_of(I64)),
        ("transaction_result_code", STR),
        ("inclusion_fee_bid", I64),
        ("inclusion_fee_charged", I64),
        ("resource_fee_refund", I64),
        ("non_refundable_resource_fee_charged", I64),
        ("refundable_resource_fee_charged", I64),
        ("rent_fee_charged", I64),
        ("tx_signers", list_of(STR)),
        # beyond stellar-etl
        ("transaction_index", I64),  # 1-based apply order within the ledger
        ("meta_version", pa.int32()),  # TransactionMeta version (0-4)
    ]
)

TOKEN_TRANSFERS = pa.schema(
    [
        ("transaction_hash", STR),
        ("transaction_id", I64),  # TOID of the transaction
        ("operation_id", I64),  # TOID of the operation; null for fee events
        ("event_topic", STR),  # transfer, mint, burn, clawback, fee
        ("from", STR),
        ("to", STR),
        ("asset", STR),  # 'native', 'credit_alphanum4:CODE:ISSUER', or '' for a custom token
        ("asset_type", STR),
        ("asset_code", STR),
        ("asset_issuer", STR),
        ("amount_raw", STR),  # exact integer in the token's base unit (int64 or i128), as text
        ("amount", pa.float64()),  # amount_raw * 1e-7, for convenience only
        ("contract_id", STR),
        ("ledger_sequence", I64),
        ("closed_at", TS),
        ("to_muxed", STR),
        ("to_muxed_id", STR),
        # beyond stellar-etl: a stable order key
        ("transaction_index", I64),  # 1-based apply order
        ("operation_index", I64),  # 1-based; null for fee events
        ("event_index", I64),  # 0-based position in the ledger's emission order
    ]
)

FAILURES = pa.schema(
    [
        ("sequence", I64),  # the ledger (null when none can be named)
        ("object_key", STR),  # object key, RPC URL or file the bytes came from; the transaction for extract errors
        ("stage", STR),  # source, decode, validate, extract or internal
        ("error", STR),
    ]
)

TABLES: dict[str, pa.Schema] = {
    LEDGERS_TABLE: LEDGERS,
    TRANSACTIONS_TABLE: TRANSACTIONS,
    TRANSFERS_TABLE: TOKEN_TRANSFERS,
}


def rows_to_table(kind: str, rows: list[dict]) -> pa.Table:
    """Column by column: pyarrow's Table.from_pylist took 130 µs a token-transfer row here,
    building each column from a list takes about 1 µs (measured on 2,048 rows)."""
    schema = TABLES[kind]
    return pa.Table.from_arrays([pa.array([row[f.name] for row in rows], f.type) for f in schema], schema=schema)
