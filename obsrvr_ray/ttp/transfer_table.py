"""Token-transfer rows of many ledgers as one Arrow table, straight from ledger bytes.

The compiled walker appends a ledger's rows to Arrow column buffers without building a Python
object per event or row: from core's unified events when every transaction carries
TransactionMetaV4 (obsrvr_ray/xdr/_transfers.c), else by the operation rules over results and
ledger-entry changes (obsrvr_ray/xdr/_derive.c), as ttp.extract chooses. What it leaves to the
Python rules (data they record as an error or cannot read, asset codes not in their canonical
form, non-canonical bytes, the extension not built, `OBSRVR_PURE_XDR=1`) is decoded and read by
them; they remain the specification, and tests/test_transfer_columns.py holds the
two to equal rows. Either way one ledger is checked as obsrvr_ray.ledger.decode checks it
(header hash, one result per envelope, the network) and raises the same DecodeError /
ValidationError.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa
from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.errors import BugError
from obsrvr_ray.gcpause import gc_paused
from obsrvr_ray.ledger import decode as D
from obsrvr_ray.ledger.hashing import SIGNED_BODIES
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.network import network_id
from obsrvr_ray.schema import TOKEN_TRANSFERS, TRANSFERS_TABLE, rows_to_table
from obsrvr_ray.ttp.assets import NATIVE, Asset, from_xdr, sac_contract_hash, sac_of_sep11
from obsrvr_ray.ttp.events import Skipped
from obsrvr_ray.ttp.extract import EVENT_SOURCES, check_events_from, token_transfer_rows
from obsrvr_ray.xdr.fast import XdrError, codec

try:
    from obsrvr_ray.xdr._fastxdr import TRANSFER_COLUMNS
    from obsrvr_ray.xdr._fastxdr import TransferColumns as _Columns
except ImportError:  # no compiler at install time: the Python rules serve every ledger
    _Columns = None
else:
    if tuple(TOKEN_TRANSFERS.names) != TRANSFER_COLUMNS:  # the walker writes its columns in its own order
        raise RuntimeError(f"schema.TOKEN_TRANSFERS {TOKEN_TRANSFERS.names} and the compiled walker's columns "
                           f"{TRANSFER_COLUMNS} differ")
_TYPE_IDS = ("LedgerCloseMeta", "LedgerCloseMetaExt", "LedgerHeader", "StellarValue", "LedgerHeaderHistoryEntryExt",
             "GeneralizedTransactionSet", "TransactionPhase", "TxSetComponent", "TransactionEnvelope",
             "TransactionResult", "LedgerEntryChanges", "TransactionMeta", "ExtensionPoint",
             "SorobanTransactionMetaV2", "DiagnosticEvent", "SCVal", "ContractEvent", "TransactionEventStage",
             "LedgerCloseMetaV0", "LedgerCloseMetaV1", "LedgerCloseMetaV2", "Preconditions", "Operation",
             "OperationResult", "LedgerEntryChange", "LedgerKey", "Claimant", "SorobanTransactionMetaExt",
             "SorobanTransactionMeta")


@dataclass(frozen=True)
class LedgerTransfers:
    """What reading one ledger's token transfers found: the header facts the hash chain checks
    (see ledger.validate.ChainChecker), and every rule it could not apply."""

    sequence: int
    hash: bytes
    previous_hash: bytes
    origin: str
    errors: list[Skipped] = field(default_factory=list)  # data that breaks a rule: recorded as failures
    skipped: int = 0  # contract events that are not token movements
    compiled: bool = True


def _answer(asset: Asset, sac: bytes) -> tuple:
    """What the walker keeps of an asset: its SAC id, the four asset columns, the issuer's key."""
    return (sac, *asset.columns, None if asset.is_native else strkey.decode(asset.issuer)[1])


def _text_answer(text: str, passphrase: str) -> tuple | None:
    """What a SAC event's asset text names, or None."""
    found = sac_of_sep11(text, passphrase)
    return None if found is None else _answer(found[0], strkey.decode(found[1])[1])


def _xdr_answer(raw: bytes, net: bytes) -> tuple | None:
    """What an operation's XDR Asset names; None when its code is not written as the rules write
    it back (they name the asset by its code as text, so a byte outside ASCII or a short code in
    an alphanum12 names another asset, or none): the rules read that ledger."""
    asset = from_xdr(X.Asset.from_xdr_bytes(raw))
    try:
        canonical = asset.to_xdr()
    except ValueError:
        return None
    if canonical.to_xdr_bytes() != raw:
        return None
    return _answer(asset, sac_contract_hash(canonical, net))


def _walker(passphrase: str, events_from: str) -> _Columns | None:
    walker_codec = codec()
    if _Columns is None or not walker_codec.compiled:
        return None
    ids = tuple(walker_codec.type_id(name) for name in _TYPE_IDS)
    bodies = {tag: (walker_codec.type_id(name), head) for tag, (name, head) in SIGNED_BODIES.items()}
    net = network_id(passphrase)
    names = {t.value: t.name for t in X.SCValType}
    native = _answer(NATIVE, sac_contract_hash(NATIVE.to_xdr(), net))
    return _Columns(walker_codec.compiled_decoder, ids, bodies, net, native,
                    lambda text: _text_answer(text, passphrase), lambda raw: _xdr_answer(raw, net), names,
                    hashlib.sha256, EVENT_SOURCES.index(events_from))


class TransferTable:
    """Appends ledgers' token-transfer rows; `take()` returns them as one table, in the order
    the ledgers were added. A ledger that fails adds nothing."""

    def __init__(self, passphrase: str, *, events_from: str = "auto") -> None:
        self.passphrase = passphrase
        self.events_from = check_events_from(events_from)
        self._walker = _walker(passphrase, events_from)
        self._pieces: list[pa.Table] = []
        self._rows: list[dict] = []  # the rules' rows since the walker's last ones: one table for them all

    @property
    def compiled(self) -> bool:
        return self._walker is not None

    @gc_paused
    def add(self, data: bytes, *, sequence: int | None = None, origin: str = "") -> LedgerTransfers:
        """Check one LedgerCloseMeta and append its rows (raises DecodeError / ValidationError)."""
        if self._walker is None:
            return self._add_decoded(data, sequence, origin)
        try:
            status, seq, hash_, previous, details, errors, skipped = self._walker.add(
                data, -1 if sequence is None else sequence)
        except XdrError as exc:
            raise D.invalid_xdr(data, exc, sequence=sequence, origin=origin) from exc
        except Exception as exc:  # not the data's fault: the walker or an asset look-up it called
            where = f"ledger {'?' if sequence is None else sequence}{f' ({origin})' if origin else ''}"
            raise BugError.at(f"{where}: compiled token-transfer walker", exc) from exc
        if status == "fallback":
            return self._add_decoded(data, sequence, origin)
        if status == "header":
            raise D.header_mismatch(seq, hash_, details, origin=origin)
        if status == "count":
            raise D.count_mismatch(seq, *details, origin=origin)
        if status == "unmatched":
            raise D.wrong_network(seq, *details, self.passphrase, origin=origin)
        if status == "sequence":
            raise D.unexpected_sequence(sequence, seq, origin=origin)
        if details and self._rows:  # the walker holds only this ledger's rows: the rules' come first
            self._flush_rows()
        return LedgerTransfers(seq, hash_, previous, origin,
                               [Skipped(seq, tx_hash, op, reason, error=True) for tx_hash, op, reason in errors],
                               skipped)

    def _add_decoded(self, data: bytes, sequence: int | None, origin: str) -> LedgerTransfers:
        return self.add_decoded(D.decode_ledger(data, self.passphrase, sequence=sequence, origin=origin,
                                                decoder="fast"))

    @gc_paused
    def add_decoded(self, ledger: Ledger) -> LedgerTransfers:
        """A ledger already decoded (from stellar-etl's rows, say), read by the Python rules."""
        rows, events = token_transfer_rows(ledger, self.passphrase, self.events_from)
        self._flush_walker()
        self._rows.extend(rows)
        return LedgerTransfers(ledger.sequence, ledger.hash, ledger.previous_hash, ledger.origin,
                               [s for s in events.skipped if s.error], sum(1 for s in events.skipped if not s.error),
                               compiled=False)

    def _flush_rows(self) -> None:
        self._pieces.append(rows_to_table(TRANSFERS_TABLE, self._rows))
        self._rows = []

    def _flush_walker(self) -> None:
        if self._walker is None or not self._walker.rows:
            return
        count, buffers = self._walker.take()
        arrays = []
        for f, (validity, offsets, values, nulls) in zip(TOKEN_TRANSFERS, buffers, strict=True):
            bufs = [None if validity is None else pa.py_buffer(validity)]
            if offsets is not None:
                bufs.append(pa.py_buffer(offsets))
            bufs.append(pa.py_buffer(values))
            arrays.append(pa.Array.from_buffers(f.type, count, bufs, null_count=nulls))
        self._pieces.append(pa.Table.from_arrays(arrays, schema=TOKEN_TRANSFERS))

    def take(self) -> pa.Table:
        """Every row added since the last take, as one table."""
        self._flush_walker()
        if self._rows:
            self._flush_rows()
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return TOKEN_TRANSFERS.empty_table()
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
