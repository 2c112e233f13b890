"""One small interface over a local directory and an S3 bucket (or any S3-compatible store).

Writes are atomic on both: a local file is written under a temporary name and renamed; an S3
PUT is atomic by nature. Reads classify errors into missing (final) and transient (retried).
`put_if_absent` (a hard link locally, a conditional PUT on S3) lets exactly one of several
writers create a key, which is what a commit record needs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from obsrvr_ray.errors import SourceError, TransientSourceError


class ObjectNotFound(SourceError):
    """The object does not exist (a final answer, not retried)."""


class ObjectStore(ABC):
    """Keys are '/'-separated paths relative to the store's root."""

    url: str

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound, TransientSourceError or SourceError otherwise."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store the object whole (atomically)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under the prefix, in lexicographic order."""

    @abstractmethod
    def children(self, prefix: str = "") -> Iterator[str]:
        """What lies directly under `prefix` (a folder: '' or ending in '/'), in lexicographic
        order and read lazily: an object's name, or a deeper prefix's name ending in '/'. A
        caller stopping at the first it wants reads one listing page, however large the store."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object if present."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under a prefix ending in '/' (and, locally, writes cut short there)."""
        for key in list(self.list(prefix)):
            self.delete(key)

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object whole unless the key exists; False when another writer got there first."""

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Move an object, replacing `dst`; ObjectNotFound when `src` does not exist."""

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


class LocalStore(ObjectStore):
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound("object not found", origin=self.describe(key)) from exc
        except OSError as exc:
            raise SourceError(f"cannot read: {exc}", origin=self.describe(key)) from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        _into_directory(path, lambda: atomic_write_bytes(path, data))

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> Iterator[str]:
        """Like an S3 listing: a file still being written (atomic_write_bytes' temporary) is not
        listed, and a directory that another writer empties and removes meanwhile is skipped."""
        base = self.root / prefix if prefix else self.root
        start = base if prefix.endswith("/") or base.is_dir() else base.parent
        found = []
        for directory, _subdirs, names in os.walk(start):  # errors (a vanished directory) are ignored
            for name in names:
                if not _is_partial(name):
                    key = (Path(directory) / name).relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        found.append(key)
        yield from sorted(found)

    def children(self, prefix: str = "") -> Iterator[str]:
        try:
            entries = list(os.scandir(self.root / prefix))
        except (FileNotFoundError, NotADirectoryError):
            return
        yield from sorted(e.name + "/" if e.is_dir() else e.name for e in entries if not _is_partial(e.name))

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        _remove_empty_parents(path.parent, self.root)

    def delete_prefix(self, prefix: str) -> None:
        """The directory goes whole: temporaries of writes a crash cut short go with it."""
        directory = self._path(prefix)
        shutil.rmtree(directory, ignore_errors=True)
        _remove_empty_parents(directory.parent, self.root)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)

        def create() -> bool:
            tmp = _write_temporary(path, data)
            try:
                os.link(tmp, path)  # fails if the key exists: the create is exclusive and atomic
                return True
            except FileExistsError:
                return False
            finally:
                Path(tmp).unlink(missing_ok=True)

        return _into_directory(path, create)

    def rename(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.exists():
            raise ObjectNotFound("object not found", origin=self.describe(src))
        try:
            _into_directory(target, lambda: os.replace(source, target))
        except FileNotFoundError as exc:  # another mover took it first
            raise ObjectNotFound("object not found", origin=self.describe(src)) from exc
        _remove_empty_parents(source.parent, self.root)


T = TypeVar("T")


def _into_directory(path: Path, create: Callable[[], T], attempts: int = 3) -> T:
    """Run `create` (which makes `path`) after making its directory, again if a concurrent
    delete removed that directory, or one above it, in between (deletes drop the directories
    they empty, as S3 has no empty prefixes)."""
    for _ in range(attempts - 1):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return create()
        except FileNotFoundError:
            if path.parent.is_dir():  # the directory is there: something else is missing
                raise
    path.parent.mkdir(parents=True, exist_ok=True)
    return create()


def _is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _remove_empty_parents(directory: Path, root: Path) -> None:
    """Drop directories a delete or rename emptied, up to the root, as S3 has no empty prefixes."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty, or already gone
            return
        directory = directory.parent


def _write_temporary(path: Path, data: bytes) -> str:
    """A durable temporary file beside `path`, to be renamed or linked into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so a reader sees the whole file or none of it."""
    tmp = _write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "503", "500", "502", "504"}


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options()
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(
            connect_timeout=self.options.connect_timeout,
            read_timeout=self.options.read_timeout,
            retries={"max_attempts": 1, "mode": "standard"},  # retries are ours (backoff, breaker)
            signature_version=UNSIGNED if self.options.anonymous else None,
        )
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.options.endpoint_url, region_name=self.options.region, config=config
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _classify(self, exc: Exception, key: str) -> SourceError:
        from botocore.exceptions import ClientError

        where = self.describe(key)
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFound("object not found", origin=where)
            if code in _TRANSIENT_CODES or (status is not None and status >= HTTPStatus.INTERNAL_SERVER_ERROR):
                return TransientSourceError(f"S3 error {code}: {exc}", origin=where)
            return SourceError(f"S3 error {code}: {exc}", origin=where)
        return TransientSourceError(
            f"S3 unreachable: {type(exc).__name__}: {exc}", origin=where
        )

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._classify(exc, key) from exc

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._classify(exc, key) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            err = self._classify(exc, key)
            if isinstance(err, ObjectNotFound):
                return False
            raise err from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def children(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full,
                                                                              Delimiter="/"):
                # A page holds a stretch of the listing's order, split into objects and prefixes.
                names = [o["Key"] for o in page.get("Contents", [])]
                names += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
                yield from (name[len(full):] for name in sorted(names))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._classify(exc, prefix) from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._classify(exc, key) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PUT (If-None-Match: *): S3 answers 412 when the key exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._classify(exc, key) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._classify(exc, key) from exc

    def rename(self, src: str, dst: str) -> None:
        """S3 has no rename: a server-side copy, then a delete of the source."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=self._key(dst), CopySource={"Bucket": self.bucket, "Key": self._key(src)}
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._classify(exc, src) from exc
        self.delete(src)


def open_store(location: str, s3: S3Options | None = None) -> ObjectStore:
    """A local directory path or an s3://bucket/prefix URL."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        return S3Store(parsed.netloc, parsed.path.lstrip("/"), s3)
    return LocalStore(location)
