"""What a backfill run did, for its summary screen and its exit code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from obsrvr_ray import exit_codes
from obsrvr_ray.chunks.process import ChunkResult
from obsrvr_ray.errors import Failure
from obsrvr_ray.progress import Timed
from obsrvr_ray.ranges import Range, format_ranges, range_key, size


@dataclass
class BackfillReport(Timed):
    source: str
    network: str
    output: str
    requested: tuple[Range, ...]
    retry: bool = False
    planned_chunks: int = 0
    planned_ledgers: int = 0
    skipped_chunks: int = 0  # committed by earlier runs
    results: list[ChunkResult] = field(default_factory=list)
    unfinished: list[tuple[Range, str]] = field(default_factory=list)  # chunks left uncommitted, and why
    retries: int = 0  # chunks run again after a transient source error
    failed_chunks: int = 0  # chunks of the requested ledgers holding failures once the run ended
    analytics: dict[str, int] = field(default_factory=dict)  # table -> rows
    problems: list[str] = field(default_factory=list)  # from --verify-output
    interrupted: int | None = None  # the signal that stopped the run

    @property
    def ledgers(self) -> int:
        return sum(r.ledgers for r in self.results)

    @property
    def new_failures(self) -> list[Failure]:
        return [f for r in self.results for f in r.found]

    @property
    def failed_ledgers(self) -> int:
        return sum(len(r.failed_ledgers) for r in self.results)

    def rows(self) -> Counter:
        out: Counter = Counter()
        for r in self.results:
            out.update(r.rows)
        return out

    def exit_code(self) -> int:
        if self.interrupted is not None:
            return exit_codes.stopped_by(self.interrupted)
        return exit_codes.FAILURES if self.unfinished or self.failed_chunks or self.problems else exit_codes.OK

    def summary(self, max_lines: int = 15) -> str:
        rate = self.ledgers / self.elapsed if self.elapsed > 0 else 0.0
        files = sum(sum(r.files.values()) for r in self.results)
        commits = sum(len(r.commits) for r in self.results)
        requested = format_ranges(self.requested) if self.requested else "every chunk of the output"
        lines = [
            f"== backfill{' --retry-failed' if self.retry else ''} ==",
            f"source     {self.source}",
            f"network    {self.network}",
            f"output     {self.output}",
            f"ledgers    {requested}  ({size(self.requested):,} requested)",
        ]
        lines += [
            f"chunks     {len(self.results)} committed now, {self.skipped_chunks} committed earlier (skipped), "
            f"{len(self.unfinished)} not committed, {self.retries} retried",
            f"processed  {self.ledgers:,} ledgers: {self.ledgers - self.failed_ledgers:,} ok, "
            f"{self.failed_ledgers:,} failed   ({rate:,.1f} ledgers/s, {self.elapsed:.1f} s)",
            "rows       " + ("   ".join(f"{t} {n:,}" for t, n in sorted(self.rows().items())) or "none"),
            f"tables     {commits:,} Delta commits" + (f", {files:,} export files" if files else ""),
        ]
        if self.analytics:
            lines.append("analytics  " + "   ".join(f"{t} {n:,}" for t, n in sorted(self.analytics.items())))
        failures = self.new_failures
        if failures:
            lines.append("failures (also in the failures table):")
            lines += [f"  - {f.describe()}" for f in failures[:max_lines]]
            if len(failures) > max_lines:
                lines.append(f"  … and {len(failures) - max_lines} more")
        if self.unfinished:
            lines.append("not committed (a rerun does them):")
            lines += [f"  - chunk {range_key(c)}: {why}" for c, why in self.unfinished[:max_lines]]
        if self.problems:
            lines.append("output problems:")
            lines += [f"  - {p}" for p in self.problems[:max_lines]]
        lines.append("status     " + self._status())
        return "\n".join(lines)

    def _status(self) -> str:
        code = self.exit_code()
        if self.interrupted is not None:
            return f"INTERRUPTED by signal {self.interrupted} (exit code {code}); rerun the same command to resume"
        if code == exit_codes.OK:
            return "OK"
        reasons = []
        if self.failed_chunks:
            reasons.append(f"{self.failed_chunks} chunks hold failures: fix the source, then run again with "
                           "--retry-failed")
        if self.unfinished:
            reasons.append(f"{len(self.unfinished)} chunks not committed: run the same command again")
        if self.problems:
            reasons.append(f"{len(self.problems)} output problems")
        return f"FAILED (exit code {code}): " + "; ".join(reasons)
