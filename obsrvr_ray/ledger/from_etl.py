"""Rebuild a Ledger from stellar-etl `export_ledger_transaction` rows (one JSON object per
transaction, base64 XDR per field), so every extraction runs on existing stellar-etl or Hubble
exports. A ledger with no transactions has no rows there, so it cannot be rebuilt.
"""

from __future__ import annotations

import json

from obsrvr_ray.errors import DecodeError, ValidationError
from obsrvr_ray.gcpause import gc_paused
from obsrvr_ray.ledger.apply_order import apply_order
from obsrvr_ray.ledger.decode import check_header_hash
from obsrvr_ray.ledger.decoder_backends import Decoder, get_decoder
from obsrvr_ray.ledger.framing import b64decode
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction

_FIELDS = {
    "tx_envelope": "TransactionEnvelope",
    "tx_result": "TransactionResultPair",
    "tx_meta": "TransactionMeta",
    "tx_fee_meta": "LedgerEntryChanges",
    "tx_ledger_history": "LedgerHeaderHistoryEntry",
}


def _decode_field(row: dict, name: str, *, sequence: int, origin: str, decoder: Decoder):
    if name not in row or row[name] is None:
        raise DecodeError(f"row has no {name!r}", sequence=sequence, origin=origin)
    raw = b64decode(row[name], sequence=sequence, origin=origin)
    try:
        return decoder.value(_FIELDS[name], raw)
    except Exception as exc:
        raise DecodeError(
            f"invalid {name} XDR: {type(exc).__name__}: {exc}", sequence=sequence, origin=origin
        ) from exc


@gc_paused
def ledger_from_etl_lines(lines: list[bytes], passphrase: str, *, sequence: int, origin: str,
                          decoder: str = "reference") -> Ledger:
    """Rows are one ledger's transactions, complete, in any order: the rows carry no index, so
    the apply order is recomputed from the envelopes and the header's transaction-set hash."""
    dec = get_decoder(decoder)
    header_entry = None
    transactions = []
    for index, line in enumerate(lines, start=1):
        where = f"{origin} (row {index} of ledger {sequence})"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DecodeError(f"not a JSON object: {exc}", sequence=sequence, origin=where) from exc
        entry = _decode_field(row, "tx_ledger_history", sequence=sequence, origin=where, decoder=dec)
        if header_entry is None:
            check_header_hash(entry, origin=where)
            header_entry = entry
        elif entry.hash.hash != header_entry.hash.hash:
            raise ValidationError("rows of one ledger carry different ledger headers", sequence=sequence,
                                  origin=where)
        envelope = _decode_field(row, "tx_envelope", sequence=sequence, origin=where, decoder=dec)
        result = _decode_field(row, "tx_result", sequence=sequence, origin=where, decoder=dec)
        tx_hash = dec.tx_hashes([envelope], passphrase)[0]
        if tx_hash != result.transaction_hash.hash:
            raise ValidationError(
                f"transaction hash {result.transaction_hash.hash.hex()} does not match the envelope hashed "
                f"with network passphrase {passphrase!r} ({tx_hash.hex()}): wrong network passphrase?",
                sequence=sequence,
                origin=where,
            )
        transactions.append(
            LedgerTransaction(
                index=index,
                hash=tx_hash,
                envelope=envelope,
                result=result,
                meta=_decode_field(row, "tx_meta", sequence=sequence, origin=where, decoder=dec),
                fee_changes=_decode_field(row, "tx_fee_meta", sequence=sequence, origin=where, decoder=dec),
            )
        )
    if header_entry is None:
        raise DecodeError("no transactions", sequence=sequence, origin=origin)
    order = apply_order([t.envelope for t in transactions], [t.envelope_xdr for t in transactions],
                        header_entry.header.scp_value.tx_set_hash.hash)
    transactions = [transactions[i] for i in order]
    for index, tx in enumerate(transactions, start=1):
        tx.index = index
    if header_entry.header.ledger_seq.uint32 != sequence:
        raise ValidationError(
            f"rows say ledger {sequence} but their header is ledger {header_entry.header.ledger_seq.uint32}",
            sequence=sequence,
            origin=origin,
        )
    return Ledger(
        sequence=sequence,
        header_entry=header_entry,
        transactions=transactions,
        close_meta_version=None,
        tx_set_size=len(transactions),
        origin=origin,
    )
