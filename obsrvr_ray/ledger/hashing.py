"""Hashes that tie ledgers together: the header hash and the transaction hash.

A transaction hash is SHA-256 over (network id, envelope type, transaction body), so it
depends on the network passphrase: recomputing it is how a wrong network is caught.
"""

from __future__ import annotations

import hashlib
import struct

from stellar_sdk import xdr as X

from obsrvr_ray.network import network_id

_TX = struct.pack(">i", X.EnvelopeType.ENVELOPE_TYPE_TX.value)
_FEE_BUMP = struct.pack(">i", X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP.value)
# A v0 transaction is signed as the v1 transaction it converts to; in XDR that conversion only
# prepends the KEY_TYPE_ED25519 discriminant to the source account (the optional time bounds
# flag 0/1 coincides with PRECOND_NONE/PRECOND_TIME).
_V0_AS_V1_PREFIX = struct.pack(">i", X.CryptoKeyType.KEY_TYPE_ED25519.value)


# Per envelope type: the XDR type of the body that follows the type tag, and what stands before
# that body in the signed payload (after the network id). signature_payload reads it for
# stellar-sdk objects, our decoder (Codec.signed_hashes) for an envelope's bytes.
SIGNED_BODIES: dict[int, tuple[str, bytes]] = {
    X.EnvelopeType.ENVELOPE_TYPE_TX.value: ("Transaction", _TX),
    X.EnvelopeType.ENVELOPE_TYPE_TX_V0.value: ("TransactionV0", _TX + _V0_AS_V1_PREFIX),
    X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP.value: ("FeeBumpTransaction", _FEE_BUMP),
}


def header_hash(header: X.LedgerHeader) -> bytes:
    return hashlib.sha256(header.to_xdr_bytes()).digest()


def signature_payload(envelope: X.TransactionEnvelope, net_id: bytes) -> bytes:
    kind = envelope.type
    if kind == X.EnvelopeType.ENVELOPE_TYPE_TX:
        body = envelope.v1.tx
    elif kind == X.EnvelopeType.ENVELOPE_TYPE_TX_V0:
        body = envelope.v0.tx
    elif kind == X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP:
        body = envelope.fee_bump.tx
    else:
        raise ValueError(f"unknown envelope type {kind}")
    return net_id + SIGNED_BODIES[kind.value][1] + body.to_xdr_bytes()


def transaction_hash(envelope: X.TransactionEnvelope, passphrase: str) -> bytes:
    return hashlib.sha256(signature_payload(envelope, network_id(passphrase))).digest()


def inner_transaction_hash(envelope: X.TransactionEnvelope, passphrase: str) -> bytes | None:
    """Hash of the inner transaction of a fee bump (None for other envelopes)."""
    if envelope.type != X.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP:
        return None
    inner = envelope.fee_bump.tx.inner_tx.v1.tx
    return hashlib.sha256(network_id(passphrase) + _TX + inner.to_xdr_bytes()).digest()
