"""API keys in one JSON file: hashed, written atomically, shared by the CLI and running servers.

Writers (CLI, admin endpoint, usage flushes) take an exclusive `flock` on `<file>.lock`, re-read
the file, change it and replace it by rename, so concurrent writers in any process never lose
each other's changes. Readers take no lock: a rename swaps the whole file, so they see either the
old or the new version. A server notices another process's change by the file's identity
(inode, mtime, size) at most `check_interval` seconds after it happens, so a revoke from the CLI
takes effect within a second. The file and its temporaries are created mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hmac
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from obsrvr_ray.security.apikeys import ApiKey, hash_key, key_id_of, new_key_id, new_secret
from obsrvr_ray.security.policy import ADMIN, check_roles
from obsrvr_ray.security.refusals import AuthenticationError, KeyStateError, KeyStoreError, UnknownKey

FORMAT_VERSION = 1
T = TypeVar("T")
log = logging.getLogger("obsrvr_ray.security.keystore")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyStore:
    """Create, list, revoke, rotate and verify API keys kept in `path`. Thread-safe."""

    def __init__(self, path: str | os.PathLike, *, check_interval: float = 0.5, usage_flush_interval: float = 60.0,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self.usage_flush_interval = usage_flush_interval
        self.clock = clock
        self._lock = threading.RLock()
        self._keys: dict[str, ApiKey] = {}
        self._identity: tuple | None = None
        self._checked = float("-inf")
        self._used: dict[str, dt.datetime] = {}  # last uses not yet written to the file
        self._flushed = time.monotonic()

    # ---- reading -------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, ApiKey], tuple | None]:
        """The file's keys and identity, read from one open file so both describe the same version."""
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise KeyStoreError(f"cannot read key store {self.path}: {exc}") from exc
        try:
            doc = json.loads(raw)
            if doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"unsupported version {doc.get('version')!r}")
            keys = {k.key_id: k for k in map(ApiKey.from_json, doc["keys"])}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyStoreError(f"key store {self.path} is malformed: {exc}") from exc
        return keys, (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _refresh(self) -> None:
        """Reload when the file changed; checked at most every `check_interval` seconds."""
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return
        try:
            st = os.stat(self.path)
            identity = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        except FileNotFoundError:
            identity = None
        except OSError as exc:
            raise KeyStoreError(f"cannot read key store {self.path}: {exc}") from exc
        if identity != self._identity:
            self._keys, self._identity = self._read()
        self._checked = now

    # ---- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, keys: dict[str, ApiKey]) -> None:
        doc = {"version": FORMAT_VERSION, "keys": [k.to_json() for k in sorted(keys.values(), key=lambda k: k.key_id)]}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    def _mutate(self, change: Callable[[dict[str, ApiKey]], T]) -> T:
        """Read-change-write under the file lock, starting from what is on disk now."""
        with self._lock, self._exclusive():
            keys, _ = self._read()
            result = change(keys)
            self._write(keys)
            self._checked = float("-inf")
            self._refresh()
            return result

    # ---- the operations ------------------------------------------------------------------
    def create(self, roles: Sequence[str] | str, *, name: str = "", expires_at: dt.datetime | None = None
               ) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, which is returned here once and never stored."""
        roles = check_roles(roles)

        def add(keys: dict[str, ApiKey]) -> tuple[ApiKey, str]:
            key_id = new_key_id()
            while key_id in keys:
                key_id = new_key_id()
            secret = new_secret(key_id)
            record = ApiKey(key_id=key_id, name=name, prefix="", roles=roles, created_at=self.clock(),
                            expires_at=expires_at).with_secret(secret)
            keys[key_id] = record
            return record, secret

        return self._mutate(add)

    def list(self) -> list[ApiKey]:
        """Every key, newest use included, oldest first."""
        with self._lock:
            self._refresh()
            keys = [self._with_usage(k) for k in self._keys.values()]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    def get(self, key_id: str) -> ApiKey:
        with self._lock:
            self._refresh()
            if key_id not in self._keys:
                raise UnknownKey(f"no API key {key_id!r}")
            return self._with_usage(self._keys[key_id])

    def revoke(self, key_id: str, *, last_admin: bool = False) -> ApiKey:
        """Stop a key working for good (revoking twice keeps the first time). The last active admin
        key is refused unless `last_admin`: without one, nobody could manage keys through the admin
        API any more (the CLI, beside the file, can revoke it on purpose, e.g. when it leaked)."""
        now = self.clock()

        def mark(keys: dict[str, ApiKey]) -> ApiKey:
            if key_id not in keys:
                raise UnknownKey(f"no API key {key_id!r}")
            record = keys[key_id]
            if record.revoked_at is None:
                admins = [k for k in keys.values() if ADMIN in k.roles and k.state(now) == "active"]
                if not last_admin and [k.key_id for k in admins] == [key_id]:
                    raise KeyStateError(f"API key {key_id} is the last active admin key: create another admin key "
                                        "first (`obsrvr-ray keys revoke --last-admin` revokes it anyway)")
                keys[key_id] = replace(record, revoked_at=now)
            return keys[key_id]

        return self._mutate(mark)

    def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the same key id and roles; the old secret stops working at once."""
        now = self.clock()

        def renew(keys: dict[str, ApiKey]) -> tuple[ApiKey, str]:
            if key_id not in keys:
                raise UnknownKey(f"no API key {key_id!r}")
            if keys[key_id].revoked_at is not None:
                raise KeyStateError(f"API key {key_id} is revoked; create a new one")
            secret = new_secret(key_id)
            keys[key_id] = replace(keys[key_id], rotated_at=now).with_secret(secret)
            return keys[key_id], secret

        return self._mutate(renew)

    def verify(self, key: str) -> ApiKey:
        """The record of a presented key, or AuthenticationError saying why it is refused."""
        key_id = key_id_of(key)
        if key_id is None:
            raise AuthenticationError("malformed API key")
        now = self.clock()
        with self._lock:
            self._refresh()
            record = self._keys.get(key_id)
            if record is None or not hmac.compare_digest(record.hash, hash_key(key)):
                raise AuthenticationError("invalid API key")
            state = record.state(now)
            if state != "active":
                raise AuthenticationError(f"API key {state}")
            self._used[key_id] = now
            if time.monotonic() - self._flushed >= self.usage_flush_interval:
                self.flush_usage()
        return record

    def flush_usage(self) -> None:
        """Write the last-use times gathered in memory (batched: one write per interval, not per request)."""
        with self._lock:
            used, self._used = self._used, {}
            self._flushed = time.monotonic()
            if not used:
                return

            def merge(keys: dict[str, ApiKey]) -> None:
                for key_id, when in used.items():
                    old = keys.get(key_id)
                    if old is not None and (old.last_used_at is None or when > old.last_used_at):
                        keys[key_id] = replace(old, last_used_at=when)

            try:
                self._mutate(merge)
            except OSError as exc:
                log.warning("could not record API key usage in %s: %s", self.path, exc)

    def _with_usage(self, key: ApiKey) -> ApiKey:
        when = self._used.get(key.key_id)
        if when is not None and (key.last_used_at is None or when > key.last_used_at):
            return replace(key, last_used_at=when)
        return key
