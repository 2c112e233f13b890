"""The exit codes of every command, defined once: scripts, `ray job` and Kubernetes read them."""

from __future__ import annotations

import signal

OK = 0  # done, every ledger asked for is in the output
FAILURES = 1  # done, but some ledgers or chunks failed (the summary says which); a rerun picks them up
USAGE = 2  # bad arguments or settings: refused before anything was read or written
_SIGNALLED = 128  # the shell's convention: 128 + the signal's number


def stopped_by(signum: int) -> int:
    """The code of a run a signal stopped (130 for SIGINT, 143 for SIGTERM), so a caller tells a
    stop from a failure and knows a rerun resumes."""
    return _SIGNALLED + signum


INTERRUPTED = stopped_by(signal.SIGINT)
