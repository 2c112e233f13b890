"""An output dataset that holds every chunk exactly once, whatever crashes on the way.

Files of a chunk are written to a staging place, then committed by creating one manifest
entry (range, files, row counts, SHA-256 checksums), then published (renamed into place):

  _backfill/staging/<chunk>.g<gen>/<attempt>/<path>   1. a marker, then every file, PUT whole
  _backfill/manifest/<chunk>.g<gen>.json              2. the commit point: created only if absent
  <path>                                              3. published by rename (copy+delete on S3),
                                                         superseded files deleted, marker deleted

A crash before step 2 leaves only staging, which no reader looks at and which is swept once
the chunk commits. After step 2 the entry is the truth: every run begins with `recover`, which
finishes publishing every entry whose attempt still has its marker (roll forward). File names are
fixed by chunk and generation, so publishing twice replaces a file with itself. Two attempts
at the same chunk (a task Ray retried, a straggler of a killed run) both stage, but only one
creates the entry; the other discards its files. Generation n > 0 is the n-th
`--retry-failed` of a chunk: new files for the ledgers that now succeed, and the chunk's
failure files replaced or removed (`removes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from obsrvr_ray.errors import ConfigError, ObsrvrError
from obsrvr_ray.objectstore import ObjectNotFound, ObjectStore
from obsrvr_ray.ranges import Range, parse_range_key, range_key

CONTROL = "_backfill"  # readers skip names starting with _ (pyarrow.dataset, Spark, Hive)
MANIFEST = f"{CONTROL}/manifest/"
STAGING = f"{CONTROL}/staging/"
SETTINGS = f"{CONTROL}/job.json"
_MANIFEST_KEY = re.compile(r"^_backfill/manifest/(\d{10}-\d{10})\.g(\d+)\.json$")
PENDING = "_pending"  # staged first and deleted last: while it exists, publishing is not finished
_STAGING_KEY = re.compile(r"^_backfill/staging/(\d{10}-\d{10})\.g(\d+)/([0-9a-f]{32})/(.+)$")


class DatasetError(ObsrvrError):
    """The dataset contradicts its manifest (a file was removed or altered behind its back)."""


@dataclass(frozen=True)
class OutputFile:
    """A file a chunk writes: its final key under the dataset root, and its content."""

    path: str
    data: bytes
    rows: int
    table: str


@dataclass(frozen=True)
class FileRecord:
    path: str
    table: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class Commit:
    """One manifest entry: what a chunk generation put in the dataset."""

    chunk: Range
    generation: int
    attempt: str
    files: list[FileRecord]
    removes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # what processing reports: ledgers, failures, hashes
    committed_at: str = ""

    @property
    def key(self) -> str:
        return manifest_key(self.chunk, self.generation)

    def to_json(self) -> bytes:
        raw = asdict(self)
        raw["chunk"] = range_key(self.chunk)
        return (json.dumps(raw, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Commit:
        raw = json.loads(data)
        raw["chunk"] = parse_range_key(raw["chunk"])
        raw["files"] = [FileRecord(**f) for f in raw["files"]]
        return cls(**raw)


def manifest_key(chunk: Range, generation: int) -> str:
    return f"{MANIFEST}{range_key(chunk)}.g{generation}.json"


def staging_prefix(chunk: Range, generation: int, attempt: str | None = None) -> str:
    base = f"{STAGING}{range_key(chunk)}.g{generation}/"
    return base if attempt is None else f"{base}{attempt}/"


@dataclass
class Recovery:
    published: int = 0  # committed generations whose publishing a crash had cut short
    discarded: int = 0  # staged attempts that lost the commit to another attempt
    pending: int = 0  # staged attempts with no commit: a crash before commit (swept when the chunk commits)


class Dataset:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def committed(self) -> dict[Range, int]:
        """Every committed chunk and its latest generation, from the manifest's key names alone."""
        latest: dict[Range, int] = {}
        for key in self.store.list(MANIFEST):
            found = _MANIFEST_KEY.match(key)
            if found:
                chunk, generation = parse_range_key(found.group(1)), int(found.group(2))
                latest[chunk] = max(generation, latest.get(chunk, 0))
        return latest

    def read_commit(self, chunk: Range, generation: int) -> Commit:
        return Commit.from_json(self.store.get(manifest_key(chunk, generation)))

    def commit(
        self, chunk: Range, generation: int, files: Iterable[OutputFile], *, removes: Iterable[str] = (),
        details: dict | None = None,
    ) -> tuple[Commit, bool]:
        """Stage, commit, publish. Returns the commit that holds the chunk generation and whether
        it is this call's (False: another attempt committed first, and its commit is returned)."""
        attempt = uuid.uuid4().hex
        prefix = staging_prefix(chunk, generation, attempt)
        self.store.put(prefix + PENDING, b"")
        records = []
        for f in files:
            self.store.put(prefix + f.path, f.data)
            records.append(FileRecord(f.path, f.table, f.rows, len(f.data), hashlib.sha256(f.data).hexdigest()))
        entry = Commit(chunk, generation, attempt, records, list(removes), details or {},
                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        won = self.store.put_if_absent(entry.key, entry.to_json())
        if not won:
            self.store.delete_prefix(prefix)
            entry = self.read_commit(chunk, generation)
        self.publish(entry)
        self.store.delete_prefix(staging_prefix(chunk, generation))  # attempts that lost or crashed
        return entry, won

    def publish(self, entry: Commit) -> None:
        """Move the entry's staged files into place and drop what it supersedes; idempotent."""
        prefix = staging_prefix(entry.chunk, entry.generation, entry.attempt)
        for f in entry.files:
            try:
                self.store.rename(prefix + f.path, f.path)
            except ObjectNotFound:
                if not self.store.exists(f.path):
                    raise DatasetError(
                        f"chunk {range_key(entry.chunk)} generation {entry.generation} is committed but "
                        f"{f.path} is neither staged nor published"
                    ) from None
        for path in entry.removes:
            self.store.delete(path)
        self.store.delete(prefix + PENDING)

    def recover(self) -> Recovery:
        """Finish what a crash interrupted: publish committed generations whose attempt is still
        staged (in generation order) and drop attempts that lost their commit."""
        attempts = set()
        for key in self.store.list(STAGING):
            found = _STAGING_KEY.match(key)
            if found:
                attempts.add((parse_range_key(found.group(1)), int(found.group(2)), found.group(3)))
        report = Recovery()
        for chunk, generation, attempt in sorted(attempts):
            try:
                entry = self.read_commit(chunk, generation)
            except ObjectNotFound:
                report.pending += 1
                continue
            if entry.attempt == attempt:
                self.publish(entry)
                report.published += 1
            else:
                self.store.delete_prefix(staging_prefix(chunk, generation, attempt))
                report.discarded += 1
        return report

    def ensure_settings(self, settings: dict) -> None:
        """Record the settings that shape the files on first use; refuse to mix in files made
        with other settings later (a rerun must produce the same files as the first run)."""
        data = (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode()
        if self.store.put_if_absent(SETTINGS, data):
            return
        existing = json.loads(self.store.get(SETTINGS))
        differ = [k for k in sorted(set(existing) | set(settings)) if existing.get(k) != settings.get(k)]
        if differ:
            detail = "; ".join(f"{k}: {existing.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
            raise ConfigError(
                f"{self.store.describe(SETTINGS)}: this output was written with other settings ({detail}); "
                "use the same settings or another output path"
            )

    def verify(self, derived: Callable[[str], bool]) -> list[str]:
        """Problems, if any: a committed file missing or not matching its checksum, a file no
        commit accounts for (`derived` names files made from the others, such as analytics),
        a committed generation still staged. Reads every file: for audits, not every run."""
        expected: dict[str, FileRecord] = {}
        latest = self.committed()
        for chunk, last in sorted(latest.items()):
            for generation in range(last + 1):
                entry = self.read_commit(chunk, generation)
                expected.update((f.path, f) for f in entry.files)
                for path in entry.removes:
                    expected.pop(path, None)
        problems = []
        for path, record in sorted(expected.items()):
            try:
                data = self.store.get(path)
            except ObjectNotFound:
                problems.append(f"{path}: committed but missing")
                continue
            if len(data) != record.bytes or hashlib.sha256(data).hexdigest() != record.sha256:
                problems.append(f"{path}: content differs from its commit ({len(data)} bytes, {record.bytes} in it)")
        for key in self.store.list():
            if key.startswith((MANIFEST, STAGING)) or key == SETTINGS or key in expected or derived(key):
                continue
            problems.append(f"{key}: in no commit")
        staged = {m.groups()[:3] for m in map(_STAGING_KEY.match, self.store.list(STAGING)) if m}
        for chunk_key, generation, attempt in sorted(staged):
            chunk = parse_range_key(chunk_key)
            if latest.get(chunk, -1) >= int(generation) and self.read_commit(chunk, int(generation)).attempt == attempt:
                problems.append(f"{staging_prefix(chunk, int(generation), attempt)}: committed but not published")
        return problems
