"""Error types that name what failed (a ledger, an object) and why.

Every failure the pipeline records carries the ledger sequence it concerns (when known), where
the bytes came from (object key, RPC URL, file) and the cause, so a summary line or a failures
row is enough to find and rerun it.
"""

from __future__ import annotations

from dataclasses import dataclass


class ObsrvrError(Exception):
    """Base class of the errors this project raises on purpose."""


class LedgerError(ObsrvrError):
    """A problem with one ledger (or a batch of them) that the rest of a range survives."""

    stage = "ledger"

    def __init__(self, message: str, *, sequence: int | None = None, origin: str | None = None) -> None:
        self.sequence = sequence
        self.origin = origin
        self.cause = message
        where = []
        if sequence is not None:
            where.append(f"ledger {sequence}")
        if origin:
            where.append(origin)
        prefix = f"{' @ '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class SourceError(LedgerError):
    """The bytes could not be fetched: missing object, unreachable store or RPC, bad response."""

    stage = "source"


class TransientSourceError(SourceError):
    """A fetch that may succeed if retried (timeouts, 5xx, throttling)."""


class DecodeError(LedgerError):
    """The bytes are not a valid ledger: corrupt or truncated XDR or compression."""

    stage = "decode"


class ValidationError(LedgerError):
    """The ledger decodes but contradicts itself or its neighbours (hashes, counts, network)."""

    stage = "validate"


class ConfigError(ObsrvrError):
    """A setting is missing or invalid; the message names the setting."""


class BugError(Exception):
    """A bug in our code, met while reading a ledger: raised with where it struck (ledger,
    transaction, operation), as stellar/go's processors wrap their errors in formatError.

    Neither an ObsrvrError nor a LedgerError on purpose: a bug is not bad input, so no caller
    records it as a failure row and carries on; it ends the run, and the message says where to
    look. Whoever wraps checks for it first, so an error is wrapped once, where it is best known."""

    @classmethod
    def at(cls, where: str, cause: BaseException) -> BugError:
        """`cause` (raise the result `from` it) prefixed with where it struck. One message
        argument, so the error pickles as it is and reaches a Ray driver whole."""
        return cls(f"{where}: {type(cause).__name__}: {cause}")


@dataclass(frozen=True)
class Failure:
    """One recorded failure: enough to report it and to retry exactly it."""

    sequence: int | None
    origin: str
    stage: str
    error: str

    @classmethod
    def from_error(cls, exc: LedgerError, sequence: int | None = None, origin: str = "") -> Failure:
        """Only a LedgerError is recorded: anything else is a bug, raised (BugError)."""
        return cls(
            sequence=exc.sequence if exc.sequence is not None else sequence,
            origin=exc.origin or origin,
            stage=exc.stage,
            error=exc.cause,
        )

    def describe(self) -> str:
        seq = f"ledger {self.sequence}" if self.sequence is not None else "unknown ledger"
        origin = f" ({self.origin})" if self.origin else ""
        return f"{seq}{origin} [{self.stage}]: {self.error}"
