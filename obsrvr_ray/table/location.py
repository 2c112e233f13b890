"""Where a set of Delta tables lives: a local directory or s3://bucket/prefix, and the options
delta-rs needs to reach it (the same S3Options as every other store of the project).

On S3, commits use conditional PUTs (`If-None-Match`, which S3 and moto support), so several
writers (a backfill and the live follower) commit to one table without a lock service.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pa_fs

from obsrvr_ray.objectstore import S3Options

# Filesystems whose calls go over a network and can stall (a hung NFS server blocks a stat).
_NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs",
                                  "lustre", "gpfs", "beegfs", "ncpfs"})
_MOUNT_FIELDS = 3  # a mount table line starts: device, mount point, filesystem type


def filesystem_type(path: str, mounts: str) -> str:
    """The type of the filesystem holding `path` (absolute), from a mount table in /proc/mounts'
    format: the mount whose point is the longest prefix of the path."""
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < _MOUNT_FIELDS:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # \040 is a space
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def is_network_filesystem(kind: str) -> bool:
    return kind in _NETWORK_FILESYSTEMS or kind.startswith("fuse")


@dataclass(frozen=True)
class TableLocation:
    root: str  # a directory, or s3://bucket/prefix
    s3: S3Options = field(default_factory=S3Options)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def on_local_disk(self) -> bool:
        """Not S3 and not a network mount (NFS, SMB, FUSE...) on this machine: a stat there answers
        in microseconds and cannot hang, so a reader may make it on an event loop. Unknown (no
        /proc/mounts): no. Asked where the reading happens (a replica's node may mount it otherwise)."""
        if self.is_s3:
            return False
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return False
        kind = filesystem_type(str(Path(self.root).resolve()), mounts)
        return bool(kind) and not is_network_filesystem(kind)

    def uri(self, table: str) -> str:
        """The table's root: `<root>/<table>` (absolute for a local directory)."""
        base = self.root.rstrip("/") if self.is_s3 else str(Path(self.root).absolute())
        return f"{base}/{table}"

    def storage_options(self) -> dict[str, str] | None:
        """delta-rs (object_store) settings. Credentials come from the environment or the
        instance's role, never from here, so they appear in no setting, log or URL."""
        if not self.is_s3:
            return None
        opts = {"conditional_put": "etag", "timeout": f"{int(self.s3.read_timeout)}s",
                "connect_timeout": f"{int(self.s3.connect_timeout)}s"}
        region = self.s3.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            opts["AWS_REGION"] = region
        if self.s3.endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.s3.endpoint_url
            if self.s3.endpoint_url.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if self.s3.anonymous:
            opts["AWS_SKIP_SIGNATURE"] = "true"
        return opts

    def arrow_filesystem(self, table: str) -> pa_fs.FileSystem:
        """pyarrow's filesystem rooted at the table's directory, where the log names its files
        (credentials, as for delta-rs, from the environment or the instance's role)."""
        if not self.is_s3:
            return pa_fs.SubTreeFileSystem(self.uri(table), pa_fs.LocalFileSystem())
        s3 = pa_fs.S3FileSystem(endpoint_override=self.s3.endpoint_url,
                                region=self.s3.region or os.environ.get("AWS_REGION") or "us-east-1",
                                anonymous=self.s3.anonymous, connect_timeout=self.s3.connect_timeout,
                                request_timeout=self.s3.read_timeout)
        return pa_fs.SubTreeFileSystem(self.uri(table).removeprefix("s3://"), s3)
