"""The sandbox feed as a detached Ray actor, so a demo app keeps its ledger source after the
command that started it has returned (stop it with `ray stop`)."""

from __future__ import annotations

import ray

NAME = "obsrvr-sandbox-feed"


@ray.remote(num_cpus=0)
class SandboxFeedActor:
    def __init__(self, interval: float, history: int) -> None:
        from obsrvr_ray.live.sandbox_feed import SandboxFeed

        self.feed = SandboxFeed(host="127.0.0.1", port=0, interval=interval, history=history).start()

    def url(self) -> str:
        return self.feed.url


def start_sandbox_feed(interval: float, history: int = 3) -> str:
    actor = SandboxFeedActor.options(name=NAME, namespace="obsrvr", lifetime="detached",
                                     get_if_exists=True).remote(interval, history)
    return ray.get(actor.url.remote())
