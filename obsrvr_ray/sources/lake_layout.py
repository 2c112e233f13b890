"""SEP-54 / galexie data-lake layout: the manifest and the object key of any ledger."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from obsrvr_ray.errors import ConfigError

CONFIG_KEY = ".config.json"
EXTENSIONS = {"zstd": ".xdr.zst", "zst": ".xdr.zst"}
LEGACY_EXTENSIONS = {"zstd": ".xdr.zstd", "zst": ".xdr.zstd"}
_MAX = 0xFFFFFFFF


@dataclass(frozen=True)
class LakeConfig:
    network_passphrase: str | None = None
    ledgers_per_batch: int = 1
    batches_per_partition: int = 64000
    compression: str = "zstd"
    version: str = "1.0"

    def __post_init__(self) -> None:
        if self.ledgers_per_batch < 1:
            raise ConfigError(f"ledgersPerBatch must be >= 1, got {self.ledgers_per_batch}")
        if self.batches_per_partition < 1:
            raise ConfigError(f"batchesPerPartition must be >= 1, got {self.batches_per_partition}")
        if self.compression not in EXTENSIONS:
            raise ConfigError(f"compression {self.compression!r} is not supported (only zstd)")

    @classmethod
    def from_json(cls, data: bytes, *, origin: str = CONFIG_KEY) -> LakeConfig:
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ConfigError(f"{origin}: not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: expected a JSON object")
        try:
            return cls(
                network_passphrase=raw.get("networkPassphrase"),
                ledgers_per_batch=int(raw.get("ledgersPerBatch", 1)),
                batches_per_partition=int(raw.get("batchesPerPartition", 64000)),
                compression=str(raw.get("compression", "zstd")),
                version=str(raw.get("version", "1.0")),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: {exc}") from exc

    def to_json(self) -> bytes:
        raw = asdict(self)
        out = {
            "networkPassphrase": raw["network_passphrase"],
            "version": raw["version"],
            "compression": raw["compression"],
            "ledgersPerBatch": raw["ledgers_per_batch"],
            "batchesPerPartition": raw["batches_per_partition"],
        }
        return (json.dumps(out, indent=2) + "\n").encode()

    @property
    def ledgers_per_partition(self) -> int:
        return self.ledgers_per_batch * self.batches_per_partition

    def batch_range(self, sequence: int) -> tuple[int, int]:
        start = sequence // self.ledgers_per_batch * self.ledgers_per_batch
        return start, start + self.ledgers_per_batch - 1

    def partition_range(self, sequence: int) -> tuple[int, int]:
        size = self.ledgers_per_partition
        start = sequence // size * size
        return start, start + size - 1

    def batch_key(self, sequence: int, *, legacy_extension: bool = False) -> str:
        """Object key of the batch holding `sequence`, relative to the lake root."""
        start, end = self.batch_range(sequence)
        ext = (LEGACY_EXTENSIONS if legacy_extension else EXTENSIONS)[self.compression]
        name = f"{_MAX - start:08X}--{start}" + (f"-{end}" if end != start else "")
        if self.batches_per_partition > 1:
            p_start, p_end = self.partition_range(sequence)
            return f"{_MAX - p_start:08X}--{p_start}-{p_end}/{name}{ext}"
        return f"{name}{ext}"

    def batches(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Batch ranges covering [start, end], in order, made as they are read (a range can be
        the whole history: never a list of it)."""
        seq = start
        while seq <= end:
            b_start, b_end = self.batch_range(seq)
            yield b_start, b_end
            seq = b_end + 1


_NAME = re.compile(r"^([0-9A-F]{8})--(\d+)(?:-(\d+))?(/|\.xdr\.zstd?)?$")


def layout_names(names: Iterable[str], *, partition: bool) -> Iterator[tuple[str, int]]:
    """The names of a galexie listing that are partitions (`partition`) or batch objects, each
    with the last ledger it holds, in the listing's order. Names start with 0xFFFFFFFF minus their
    first ledger, so in a store's lexicographic order the newest comes first."""
    for name in names:
        found = _NAME.match(name)
        if found and (found.group(4) == "/") == partition and int(found.group(1), 16) == _MAX - int(found.group(2)):
            yield name, int(found.group(3) or found.group(2))


PUBNET_PUBLIC_LAKE = "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet"
PUBNET_PUBLIC_LAKE_REGION = "us-east-2"
