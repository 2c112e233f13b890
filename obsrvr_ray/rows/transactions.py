"""`transactions` rows with stellar-etl's `export_transactions` columns and meanings."""

from __future__ import annotations

import base64

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.gcpause import gc_paused
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.accounts import base_account, muxed_parts
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.ledger.results import go_enum_name, recorded_inner_hash, successful
from obsrvr_ray.toid import toid

_MEMO_HASHES = (X.MemoType.MEMO_HASH, X.MemoType.MEMO_RETURN)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_utf8_per_byte(data: bytes) -> str:
    """UTF-8 with one U+FFFD per invalid byte, as Go's encoding/json writes text memos
    (Python's "replace" handler would merge some invalid sequences into one)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i = [], 0
    while i < len(data):
        for width in (1, 2, 3, 4):
            try:
                out.append(data[i : i + width].decode("utf-8"))
            except UnicodeDecodeError:
                continue
            i += width
            break
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def memo_text(memo: X.Memo) -> str:
    """stellar-etl's memo column: text as is, id in decimal, hash/return in base64."""
    kind = memo.type
    if kind == X.MemoType.MEMO_TEXT:
        return decode_utf8_per_byte(memo.text)
    if kind == X.MemoType.MEMO_ID:
        return str(memo.id.uint64)
    if kind == X.MemoType.MEMO_HASH:
        return _b64(memo.hash.hash)
    if kind == X.MemoType.MEMO_RETURN:
        return _b64(memo.ret_hash.hash)
    return ""


def format_time_bounds(bounds: X.TimeBounds | None) -> str:
    if bounds is None:
        return ""
    lo, hi = bounds.min_time.time_point.uint64, bounds.max_time.time_point.uint64
    return f"[{lo},{hi})" if hi else f"[{lo},)"


def format_ledger_bounds(bounds: X.LedgerBounds | None) -> str:
    if bounds is None:
        return ""
    return f"[{bounds.min_ledger.uint32},{bounds.max_ledger.uint32})"


def signer_key(key: X.SignerKey) -> str:
    kind = key.type
    if kind == X.SignerKeyType.SIGNER_KEY_TYPE_ED25519:
        return strkey.account(key.ed25519.uint256)
    if kind == X.SignerKeyType.SIGNER_KEY_TYPE_PRE_AUTH_TX:
        return strkey.encode(strkey.PRE_AUTH_TX, key.pre_auth_tx.uint256)
    if kind == X.SignerKeyType.SIGNER_KEY_TYPE_HASH_X:
        return strkey.encode(strkey.HASH_X, key.hash_x.uint256)
    payload = key.ed25519_signed_payload
    data = payload.payload
    padded = len(data).to_bytes(4, "big") + data + b"\x00" * (-len(data) % 4)
    return strkey.encode(strkey.SIGNED_PAYLOAD, payload.ed25519.uint256 + padded)


def soroban_fees(tx: LedgerTransaction, protocol: int) -> dict:
    """Resource-fee columns. The fee payer's balance deltas give the inclusion fee charged and the
    refund, as stellar-etl computes them (muxed fee payers are reduced to their G account)."""
    env, meta = tx.envelope, tx.meta
    data = E.soroban_data(env)
    out = dict.fromkeys(
        (
            "resource_fee", "soroban_resources_instructions", "soroban_resources_read_bytes",
            "soroban_resources_disk_read_bytes", "soroban_resources_write_bytes", "inclusion_fee_bid",
            "inclusion_fee_charged", "resource_fee_refund", "non_refundable_resource_fee_charged",
            "refundable_resource_fee_charged", "rent_fee_charged",
        ),
        0,
    )
    out["soroban_resources_archived_entries"] = None
    if data is None:
        return out
    res = data.resources
    resource_fee = data.resource_fee.int64
    disk_read = res.disk_read_bytes.uint32
    out.update(
        resource_fee=resource_fee,
        soroban_resources_instructions=res.instructions.uint32,
        soroban_resources_read_bytes=disk_read,
        soroban_resources_disk_read_bytes=disk_read,
        soroban_resources_write_bytes=res.write_bytes.uint32,
    )
    if data.ext.v == 1:
        archived = [i.uint32 for i in data.ext.resource_ext.archived_soroban_entries]
        out["soroban_resources_archived_entries"] = archived or None
    outer_fee = E.fee_bump_fee(env)
    out["inclusion_fee_bid"] = (outer_fee if outer_fee is not None else E.inner_fee(env)) - resource_fee
    payer = base_account(E.fee_source(env))
    start, end = M.account_balances(tx.fee_changes.ledger_entry_changes, payer)
    out["inclusion_fee_charged"] = (start - end) - resource_fee
    if meta.v in (3, 4):
        start, end = M.account_balances(M.refund_changes(tx), payer)
        out["resource_fee_refund"] = end - start
        sm = M.soroban_meta(meta)
        if sm is not None and sm.ext.v == 1:
            v1 = sm.ext.v1
            out["non_refundable_resource_fee_charged"] = v1.total_non_refundable_resource_fee_charged.int64
            out["refundable_resource_fee_charged"] = v1.total_refundable_resource_fee_charged.int64
            out["rent_fee_charged"] = v1.rent_fee_charged.int64
    return out


def transaction_row(ledger: Ledger, tx: LedgerTransaction) -> dict:
    env = tx.envelope
    result = tx.result.result
    inner = E.inner_transaction(env)
    account, account_muxed, _ = muxed_parts(E.source_account(env))
    cond = E.preconditions_v2(env)
    fee_bump = E.is_fee_bump(env)
    row = {
        "transaction_hash": tx.hash.hex(),
        "ledger_sequence": ledger.sequence,
        "account": account,
        "account_muxed": account_muxed,
        "account_sequence": inner.seq_num.sequence_number.int64,
        "max_fee": E.inner_fee(env),
        "fee_charged": result.fee_charged.int64,
        "operation_count": len(inner.operations),
        "tx_envelope": _b64(tx.envelope_xdr),
        "tx_result": _b64(result.to_xdr_bytes()),
        "tx_meta": _b64(tx.meta_xdr),
        "tx_fee_meta": _b64(tx.fee_meta_xdr),
        "created_at": ledger.closed_at,
        "memo_type": go_enum_name(inner.memo.type),
        "memo": memo_text(inner.memo),
        "time_bounds": format_time_bounds(E.time_bounds(env)),
        "successful": successful(result),
        "id": toid(ledger.sequence, tx.index),
        "fee_account": None,
        "fee_account_muxed": None,
        "inner_transaction_hash": None,
        "new_max_fee": None,
        "ledger_bounds": format_ledger_bounds(cond.ledger_bounds if cond else None),
        "min_account_sequence": None,
        "min_account_sequence_age": None,
        "min_account_sequence_ledger_gap": None,
        "extra_signers": None,
        "closed_at": ledger.closed_at,
        "transaction_result_code": go_enum_name(result.result.code),
        "tx_signers": [strkey.account(sig.signature.signature) for sig in E.signatures(env)],
        "transaction_index": tx.index,
        "meta_version": tx.meta.v,
    }
    if fee_bump:
        fee_account, fee_muxed, _ = muxed_parts(env.fee_bump.tx.fee_source)
        inner_hash = recorded_inner_hash(result)
        row.update(
            fee_account=fee_account,
            fee_account_muxed=fee_muxed,
            inner_transaction_hash=inner_hash.hex() if inner_hash else None,
            new_max_fee=E.fee_bump_fee(env),
        )
    if cond is not None:
        row.update(
            min_account_sequence=cond.min_seq_num.sequence_number.int64 if cond.min_seq_num else None,
            min_account_sequence_age=cond.min_seq_age.duration.uint64,
            min_account_sequence_ledger_gap=cond.min_seq_ledger_gap.uint32,
            extra_signers=[signer_key(k) for k in cond.extra_signers] or None,
        )
    row.update(soroban_fees(tx, ledger.protocol_version))
    if fee_bump and E.soroban_data(env) is not None and ledger.protocol_version < 21:
        # stellar-etl's correction for a protocol-20 core bug in fee-bumped Soroban fees
        row["fee_charged"] = row["resource_fee"] - row["resource_fee_refund"]
    return row


@gc_paused
def transaction_rows(ledger: Ledger) -> list[dict]:
    return [transaction_row(ledger, tx) for tx in ledger.transactions]
