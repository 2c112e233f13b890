"""API key format, hashing and the stored record.

A key reads `ork_<key id>_<secret>`: the prefix makes leaked keys recognisable to secret
scanners, the 12-hex-digit key id finds the record without comparing against every hash, and the
secret is 32 bytes from `secrets` (256 bits). Only SHA-256 of the whole key is stored. A salted,
deliberately slow KDF (bcrypt, scrypt, argon2) protects low-entropy passwords against guessing;
a 256-bit random secret cannot be guessed, so a fast hash is as strong here and keeps each
request's check to a microsecond. Hashes are compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field, replace

KEY_PREFIX = "ork"
_KEY_RE = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")


def new_key_id() -> str:
    return secrets.token_hex(6)


def new_secret(key_id: str) -> str:
    """A fresh key for `key_id` (shown to its owner once, never stored)."""
    return f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def looks_like_key(value: str) -> bool:
    """Tell an API key from a JWT when both arrive as a bearer credential."""
    return value.startswith(f"{KEY_PREFIX}_")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """Enough of a key to recognise it in a list (the id and 4 of the secret's 43 characters)."""
    return key[: len(KEY_PREFIX) + 1 + 12 + 1 + 4]


def _ts(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class ApiKey:
    """One key's record as stored: everything about the key except the key itself."""

    key_id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    rotated_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    hash: str = field(default="", repr=False)

    def state(self, now: dt.datetime) -> str:
        """`active`, `revoked` or `expired`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def with_secret(self, key: str) -> ApiKey:
        return replace(self, prefix=display_prefix(key), hash=hash_key(key))

    def public(self, now: dt.datetime) -> dict:
        """The record for lists and APIs: never the hash."""
        return {
            "key_id": self.key_id, "name": self.name, "prefix": self.prefix, "roles": list(self.roles),
            "state": self.state(now), "created_at": _ts(self.created_at), "expires_at": _ts(self.expires_at),
            "revoked_at": _ts(self.revoked_at), "rotated_at": _ts(self.rotated_at),
            "last_used_at": _ts(self.last_used_at),
        }

    def to_json(self) -> dict:
        return {
            "key_id": self.key_id, "name": self.name, "prefix": self.prefix, "roles": list(self.roles),
            "sha256": self.hash, "created_at": _ts(self.created_at), "expires_at": _ts(self.expires_at),
            "revoked_at": _ts(self.revoked_at), "rotated_at": _ts(self.rotated_at),
            "last_used_at": _ts(self.last_used_at),
        }

    @classmethod
    def from_json(cls, obj: dict) -> ApiKey:
        return cls(
            key_id=obj["key_id"], name=obj.get("name", ""), prefix=obj["prefix"], roles=tuple(obj["roles"]),
            hash=obj["sha256"], created_at=_parse_ts(obj["created_at"]), expires_at=_parse_ts(obj.get("expires_at")),
            revoked_at=_parse_ts(obj.get("revoked_at")), rotated_at=_parse_ts(obj.get("rotated_at")),
            last_used_at=_parse_ts(obj.get("last_used_at")),
        )
