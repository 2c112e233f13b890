"""LedgerCloseMeta bytes -> Ledger: header plus transactions in apply order, each paired with
its envelope by hash.

The transaction set lists envelopes in hash order (v0) or by phase, stage and cluster
(protocol 23+ parallel sets); `txProcessing` lists results and meta in apply order. The only
link between the two is the transaction hash, which commits to the network passphrase, so
pairing them is also the check that the ledger belongs to the configured network.
"""

from __future__ import annotations

import hashlib

import xdrlib3
from stellar_sdk import xdr as X

from obsrvr_ray.errors import DecodeError, ValidationError
from obsrvr_ray.gcpause import gc_paused
from obsrvr_ray.ledger.decoder_backends import get_decoder
from obsrvr_ray.ledger.framing import batch_header
from obsrvr_ray.ledger.hashing import header_hash
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.xdr.fast import codec
from obsrvr_ray.xdr.pydecode import XdrError


def invalid_xdr(data: bytes, exc: Exception, *, sequence: int | None, origin: str) -> DecodeError:
    """The error for bytes that are not a LedgerCloseMeta, whichever walker found it."""
    return DecodeError(f"invalid LedgerCloseMeta XDR ({len(data)} bytes): {type(exc).__name__}: {exc}",
                       sequence=sequence, origin=origin)


def header_mismatch(sequence: int, recorded: bytes, actual: bytes, *, origin: str) -> ValidationError:
    return ValidationError(f"header hash mismatch: recorded {recorded.hex()}, header hashes to {actual.hex()}",
                           sequence=sequence, origin=origin)


def count_mismatch(sequence: int, envelopes: int, results: int, *, origin: str) -> ValidationError:
    return ValidationError(f"transaction set has {envelopes} envelopes but {results} results",
                           sequence=sequence, origin=origin)


def wrong_network(sequence: int, unmatched: int, results: int, passphrase: str, *, origin: str) -> ValidationError:
    """Transaction hashes commit to the network passphrase: results that match no envelope."""
    return ValidationError(
        f"{unmatched} of {results} transaction hashes do not match any envelope hashed "
        f"with network passphrase {passphrase!r}: wrong network passphrase, or corrupt transaction set",
        sequence=sequence, origin=origin)


def unexpected_sequence(expected: int, found: int, *, origin: str) -> ValidationError:
    return ValidationError(f"expected ledger {expected} but the bytes hold ledger {found}", sequence=expected,
                           origin=origin)


def decode_close_meta(data: bytes, *, sequence: int | None = None, origin: str = "",
                      decoder: str = "reference") -> X.LedgerCloseMeta:
    try:
        return get_decoder(decoder).value("LedgerCloseMeta", data)
    except Exception as exc:  # both decoders raise ValueError/EOFError subclasses on bad bytes
        raise invalid_xdr(data, exc, sequence=sequence, origin=origin) from exc


def split_batch(data: bytes, *, origin: str = "") -> list[tuple[int, bytes]]:
    """Cut an XDR LedgerCloseMetaBatch into (sequence, LedgerCloseMeta bytes) pairs.

    A one-ledger batch (the public lake's layout) is cut without decoding anything.
    """
    start, end, count = batch_header(data, origin=origin)
    if end < start or count != end - start + 1:
        raise DecodeError(
            f"inconsistent LedgerCloseMetaBatch header: start={start} end={end} count={count}",
            origin=origin,
            sequence=start,
        )
    if count == 1:
        return [(start, data[12:])]
    walker = codec()
    pos = 12
    out = []
    for i in range(count):
        try:
            after = walker.skip("LedgerCloseMeta", data, pos)
        except XdrError as exc:
            raise DecodeError(
                f"invalid LedgerCloseMeta XDR at entry {i} of batch {start}-{end}: {exc}",
                sequence=start + i,
                origin=origin,
            ) from exc
        out.append((start + i, data[pos:after]))
        pos = after
    if pos != len(data):
        raise DecodeError(
            f"{len(data) - pos} trailing bytes after batch {start}-{end}",
            sequence=end,
            origin=origin,
        )
    return out


def tx_set_envelopes(lcm: X.LedgerCloseMeta) -> list[X.TransactionEnvelope]:
    """Every envelope of the ledger's transaction set, whatever its version."""
    if lcm.v == 0:
        return list(lcm.v0.tx_set.txs)
    body = lcm.v1 if lcm.v == 1 else lcm.v2
    gen = body.tx_set
    if gen.v != 1:
        raise ValueError(f"unknown GeneralizedTransactionSet version {gen.v}")
    out: list[X.TransactionEnvelope] = []
    for phase in gen.v1_tx_set.phases:
        if phase.v == 0:
            for component in phase.v0_components:
                out.extend(component.txs_maybe_discounted_fee.txs)
        elif phase.v == 1:
            for stage in phase.parallel_txs_component.execution_stages:
                for cluster in stage.parallel_tx_execution_stage:
                    out.extend(cluster.dependent_tx_cluster)
        else:
            raise ValueError(f"unknown TransactionPhase version {phase.v}")
    return out


def close_meta_body(lcm: X.LedgerCloseMeta):
    if lcm.v == 0:
        return lcm.v0
    if lcm.v == 1:
        return lcm.v1
    if lcm.v == 2:
        return lcm.v2
    raise ValueError(f"unknown LedgerCloseMeta version {lcm.v}")


def raw_header_hash(data: bytes) -> bytes:
    """SHA-256 of the header's bytes as they are in a LedgerCloseMeta: what the header hash
    commits to when they are canonical, without encoding the decoded header again (that took
    most of a small ledger's time)."""
    walker = codec()
    start = 4 if int.from_bytes(data[:4], "big") == 0 else walker.skip("LedgerCloseMetaExt", data, 4)
    return hashlib.sha256(data[start + 32:walker.skip("LedgerHeader", data, start + 32)]).digest()


def check_header_hash(entry: X.LedgerHeaderHistoryEntry, *, origin: str = "", raw: bytes | None = None) -> None:
    """`raw`: the hash of the header's own bytes, when known; they are checked again encoded
    canonically only if they do not match."""
    if raw is not None and raw == entry.hash.hash:
        return
    seq = entry.header.ledger_seq.uint32
    actual = header_hash(entry.header)
    if actual != entry.hash.hash:
        raise header_mismatch(seq, entry.hash.hash, actual, origin=origin)


def ledger_from_close_meta(lcm: X.LedgerCloseMeta, passphrase: str, *, origin: str = "",
                           decoder: str = "reference", raw_hash: bytes | None = None) -> Ledger:
    """Pair results with envelopes and check the ledger against itself and the network.
    `raw_hash`: see raw_header_hash."""
    body = close_meta_body(lcm)
    entry = body.ledger_header
    seq = entry.header.ledger_seq.uint32
    check_header_hash(entry, origin=origin, raw=raw_hash)
    try:
        envelopes = tx_set_envelopes(lcm)
    except ValueError as exc:
        raise DecodeError(str(exc), sequence=seq, origin=origin) from exc
    processing = body.tx_processing
    if len(envelopes) != len(processing):
        raise count_mismatch(seq, len(envelopes), len(processing), origin=origin)
    by_hash = dict(zip(get_decoder(decoder).tx_hashes(envelopes, passphrase), envelopes, strict=True))
    transactions = []
    unmatched = 0
    for i, item in enumerate(processing, start=1):
        tx_hash = item.result.transaction_hash.hash
        env = by_hash.get(tx_hash)
        if env is None:
            unmatched += 1
            continue
        transactions.append(
            LedgerTransaction(
                index=i,
                hash=tx_hash,
                envelope=env,
                result=item.result,
                meta=item.tx_apply_processing,
                fee_changes=item.fee_processing,
                post_apply_fee_changes=getattr(item, "post_tx_apply_fee_processing", None),
            )
        )
    if unmatched:
        raise wrong_network(seq, unmatched, len(processing), passphrase, origin=origin)
    return Ledger(
        sequence=seq,
        header_entry=entry,
        transactions=transactions,
        close_meta_version=lcm.v,
        tx_set_size=len(envelopes),
        origin=origin,
        close_meta=lcm,
    )


@gc_paused
def decode_ledger(data: bytes, passphrase: str, *, sequence: int | None = None, origin: str = "",
                  decoder: str = "reference") -> Ledger:
    """Bytes of one LedgerCloseMeta -> validated Ledger (raises DecodeError / ValidationError)."""
    lcm = decode_close_meta(data, sequence=sequence, origin=origin, decoder=decoder)
    raw_hash = raw_header_hash(data) if decoder == "fast" else None  # the reference checks as stellar-sdk encodes
    ledger = ledger_from_close_meta(lcm, passphrase, origin=origin, decoder=decoder, raw_hash=raw_hash)
    if sequence is not None and ledger.sequence != sequence:
        raise unexpected_sequence(sequence, ledger.sequence, origin=origin)
    return ledger


def peek_header(data: bytes, *, origin: str = "") -> X.LedgerHeaderHistoryEntry:
    """The header of a LedgerCloseMeta without decoding the rest (it comes first, after the
    version and, from v1, the LedgerCloseMetaExt)."""
    try:
        unpacker = xdrlib3.Unpacker(data)
        version = unpacker.unpack_int()
        if version not in (0, 1, 2):
            raise ValueError(f"unknown LedgerCloseMeta version {version}")
        if version >= 1:
            X.LedgerCloseMetaExt.unpack(unpacker)
        return X.LedgerHeaderHistoryEntry.unpack(unpacker)
    except Exception as exc:
        raise DecodeError(
            f"cannot read the ledger header: {type(exc).__name__}: {exc}", origin=origin
        ) from exc


def peek_sequence(data: bytes, *, origin: str = "") -> int:
    return peek_header(data, origin=origin).header.ledger_seq.uint32
