"""The two decoders of ledger bytes: stellar-sdk's (the reference, the oracle of our tests) and
ours (obsrvr_ray.xdr: table-driven, compiled, leaves what a table does not read encoded).

Both give stellar-sdk objects, so every rule downstream is written once."""

from __future__ import annotations

from typing import Protocol

from stellar_sdk import xdr as X

from obsrvr_ray.ledger.hashing import SIGNED_BODIES, transaction_hash
from obsrvr_ray.network import network_id
from obsrvr_ray.xdr.fast import codec

# What the fast decoder leaves encoded until read: most of a ledger's bytes, and nothing the
# token-transfer path reads on its common paths.
LAZY_TYPES = frozenset({
    "TransactionEnvelope",  # read by derived events and the transactions table; hashed from bytes
    "TransactionMeta",  # opened one level when events are read; its bytes feed tx_meta
    "LedgerEntryChanges",  # balance changes: read by reconciliation and a few rules
    "TransactionResult",  # operation results: read by derived events; the code is read from the bytes
    "DiagnosticEvent",
    "SorobanTransactionMeta",  # return value and resource fees: read by the transactions table only
    "SorobanTransactionMetaV2",
    "SCPHistoryEntry",
    "UpgradeEntryMeta",
    "LedgerKey",
})

class Decoder(Protocol):
    name: str

    def value(self, type_name: str, data: bytes) -> object:
        """The whole of `data` decoded as the XDR type `type_name`."""

    def tx_hashes(self, envelopes: list[X.TransactionEnvelope], passphrase: str) -> list[bytes]:
        """The transaction hashes under the network passphrase."""


class ReferenceDecoder:
    name = "reference"

    def value(self, type_name: str, data: bytes) -> object:
        return getattr(X, type_name).from_xdr_bytes(data)

    def tx_hashes(self, envelopes: list[X.TransactionEnvelope], passphrase: str) -> list[bytes]:
        return [transaction_hash(envelope, passphrase) for envelope in envelopes]


class FastDecoder:
    name = "fast"

    def __init__(self, compiled: bool | None = None) -> None:
        self.codec = codec(LAZY_TYPES, compiled=compiled)
        self._skip = codec(compiled=compiled)
        self.compiled = self.codec.compiled

    def value(self, type_name: str, data: bytes) -> object:
        """Spans of the input stand for parts of it (envelopes to hash, tx_meta...), which is only
        right for canonical XDR. Non-canonical bytes that the reference accepts (an optional flag
        of 2, non-zero padding) are re-encoded canonically first, as the reference's objects are."""
        value, _, canonical = self.codec.decode(type_name, data)
        if canonical:
            return value
        full = codec(compiled=self.compiled).decode(type_name, data)[0]
        return self.codec.decode(type_name, full.to_xdr_bytes())[0]

    def tx_hashes(self, envelopes: list[X.TransactionEnvelope], passphrase: str) -> list[bytes]:
        """Hashed from the envelopes' own bytes, all in one call (see hashing.SIGNED_BODIES)."""
        return self._skip.signed_hashes([e.to_xdr_bytes() for e in envelopes], SIGNED_BODIES, network_id(passphrase))


_DECODERS: dict[tuple[str, bool], Decoder] = {}


def get_decoder(name: str = "fast") -> Decoder:
    """'fast' is compiled when the extension was built and OBSRVR_PURE_XDR is not set."""
    if name not in ("fast", "reference"):
        raise ValueError(f"decoder must be 'fast' or 'reference', got {name!r}")
    compiled = name == "fast" and codec().compiled
    key = (name, compiled)
    if key not in _DECODERS:
        _DECODERS[key] = FastDecoder(compiled) if name == "fast" else ReferenceDecoder()
    return _DECODERS[key]
