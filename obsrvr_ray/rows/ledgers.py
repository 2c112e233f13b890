"""`ledgers` rows with stellar-etl's `export_ledgers` columns and meanings."""

from __future__ import annotations

import base64

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger.decode import close_meta_body, tx_set_envelopes
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ledger.results import go_enum_name, operation_results, successful
from obsrvr_ray.toid import toid


def ledger_row(ledger: Ledger) -> dict:
    header = ledger.header
    lcm = ledger.close_meta
    envelopes = tx_set_envelopes(lcm) if lcm is not None else [tx.envelope for tx in ledger.transactions]
    succeeded = failed = op_count = 0
    for tx in ledger.transactions:
        result = tx.result.result
        if successful(result):
            succeeded += 1
            op_count += len(operation_results(result) or ())
        else:
            failed += 1
    node_id = signature = ""
    if header.scp_value.ext.v == X.StellarValueType.STELLAR_VALUE_SIGNED:
        sig = header.scp_value.ext.lc_value_signature
        node_id = strkey.account(sig.node_id.node_id.ed25519.uint256)
        signature = base64.b64encode(sig.signature.signature).decode()
    write_fee = state_size = 0
    evicted_types = evicted_keys = None
    if lcm is not None and lcm.v >= 1:
        body = close_meta_body(lcm)
        if body.ext.v == 1:
            write_fee = body.ext.v1.soroban_fee_write1_kb.int64
        state_size = body.total_byte_size_of_live_soroban_state.uint64
        evicted_types = [go_enum_name(k.type) for k in body.evicted_keys]
        evicted_keys = [base64.b64encode(k.to_xdr_bytes()).decode() for k in body.evicted_keys]
    return {
        "sequence": ledger.sequence,
        "ledger_hash": ledger.hash.hex(),
        "previous_ledger_hash": ledger.previous_hash.hex(),
        "transaction_count": len(envelopes) - failed,
        "operation_count": op_count,
        "successful_transaction_count": succeeded,
        "failed_transaction_count": failed,
        "tx_set_operation_count": str(sum(len(E.operations(env)) for env in envelopes)),
        "closed_at": ledger.closed_at,
        "id": toid(ledger.sequence),
        "total_coins": header.total_coins.int64,
        "fee_pool": header.fee_pool.int64,
        "base_fee": header.base_fee.uint32,
        "base_reserve": header.base_reserve.uint32,
        "max_tx_set_size": header.max_tx_set_size.uint32,
        "protocol_version": header.ledger_version.uint32,
        "ledger_header": base64.b64encode(ledger.header_xdr).decode(),
        "soroban_fee_write_1kb": write_fee,
        "node_id": node_id,
        "signature": signature,
        "total_byte_size_of_bucket_list": state_size,
        "total_byte_size_of_live_soroban_state": state_size,
        "evicted_ledger_keys_type": evicted_types,
        "evicted_ledger_keys_hash": evicted_keys,
        "close_meta_version": lcm.v if lcm is not None else None,
        "bucket_list_hash": header.bucket_list_hash.hash.hex(),
        "tx_set_result_hash": header.tx_set_result_hash.hash.hex(),
    }
