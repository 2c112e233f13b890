"""The sandbox feed as a detached Ray actor, so a demo app keeps its ledger source after the
command that started it has returned (`obsrvr-sandbox feed --detach`; `ray stop` ends it)."""

from __future__ import annotations

import ray

NAME = "obsrvr-sandbox-feed"


@ray.remote(num_cpus=0)
class SandboxFeedActor:
    def __init__(self, host: str, port: int, interval: float, history: int) -> None:
        from obsrvr_sandbox.feed import SandboxFeed

        self.feed = SandboxFeed(host=host, port=port, interval=interval, history=history).start()

    def url(self) -> str:
        return self.feed.url


def start_sandbox_feed(interval: float, history: int = 3, *, host: str = "127.0.0.1", port: int = 0) -> str:
    """The URL of the cluster's sandbox feed, started unless one already runs (then that one's,
    whatever its interval: one feed per cluster, so a second demo follows the same chain)."""
    actor = SandboxFeedActor.options(name=NAME, namespace="obsrvr", lifetime="detached",
                                     get_if_exists=True).remote(host, port, interval, history)
    return ray.get(actor.url.remote())
