"""Compression and framing of ledger files: zstd (frames with or without a content size), gzip,
XDR batches and base64 text lines.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import struct
import zlib

import zstandard

from obsrvr_ray.errors import DecodeError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def zstd_decompress(data: bytes, *, origin: str = "", sequence: int | None = None) -> bytes:
    """Decompress every frame with a streaming decompressor.

    Galexie writes frames without a content size, which the one-shot API refuses; and a
    truncated frame must be an error, not a silently short result.
    """
    out = []
    rest = data
    try:
        while rest:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            out.append(dobj.decompress(rest))
            if not dobj.eof:
                raise DecodeError(
                    f"truncated zstd frame ({len(data)} bytes read, frame incomplete)",
                    origin=origin,
                    sequence=sequence,
                )
            rest = dobj.unused_data
    except zstandard.ZstdError as exc:
        raise DecodeError(f"corrupt zstd data: {exc}", origin=origin, sequence=sequence) from exc
    return b"".join(out)


def gzip_decompress(data: bytes, *, origin: str = "", sequence: int | None = None) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DecodeError(f"corrupt or truncated gzip data: {exc}", origin=origin, sequence=sequence) from exc


def decompress(data: bytes, *, origin: str = "", sequence: int | None = None) -> bytes:
    """Undo whatever compression the bytes carry, recognised by magic number."""
    if data.startswith(ZSTD_MAGIC):
        return zstd_decompress(data, origin=origin, sequence=sequence)
    if data.startswith(GZIP_MAGIC):
        return gzip_decompress(data, origin=origin, sequence=sequence)
    return data


def zstd_compress(data: bytes, level: int = 3) -> bytes:
    """Compress like galexie: one frame, no content size written (readers must stream)."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=False)
    return cctx.compress(data)


def b64decode(text: str | bytes, *, origin: str = "", sequence: int | None = None) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"invalid base64: {exc}", origin=origin, sequence=sequence) from exc


def batch_header(data: bytes, *, origin: str = "") -> tuple[int, int, int]:
    """(startSequence, endSequence, count) of an XDR LedgerCloseMetaBatch, without decoding it."""
    if len(data) < 12:
        raise DecodeError(f"truncated LedgerCloseMetaBatch ({len(data)} bytes)", origin=origin)
    return struct.unpack_from(">III", data, 0)
