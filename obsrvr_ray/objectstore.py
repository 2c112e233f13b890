"""One small interface over a local directory and an S3 bucket (or any S3-compatible store).

Writes are atomic on both: a local file is written under a temporary name and renamed; an S3
PUT is atomic by nature. Reads classify errors into missing (final) and transient (retried).
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
    def delete(self, key: str) -> None:
        """Remove the object if present."""

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
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return
        for path in sorted(start.rglob("*")):
            if path.is_file():
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so a reader sees the whole file or none of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
            if code in _TRANSIENT_CODES or (status is not None and status >= 500):
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

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(location: str, s3: S3Options | None = None) -> ObjectStore:
    """A local directory path or an s3://bucket/prefix URL."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        return S3Store(parsed.netloc, parsed.path.lstrip("/"), s3)
    return LocalStore(location)
