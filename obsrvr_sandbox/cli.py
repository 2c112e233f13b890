"""`obsrvr-sandbox`: ledgers of our own for demos and tests, outside the runtime.

`generate` writes a galexie-layout lake of sandbox ledgers; `feed` serves a growing sandbox
chain over getLedgers (in this process, or as a detached actor of a Ray cluster with
--detach), for `obsrvr-ray serve --rpc URL` to follow.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import run, wait_for_stop
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ranges import ledger_number


def cmd_generate(args: argparse.Namespace) -> int:
    from obsrvr_ray.network import SANDBOX
    from obsrvr_ray.objectstore import S3Options, open_store
    from obsrvr_ray.sinks.lake_writer import LakeWriter
    from obsrvr_ray.sources.lake_layout import LakeConfig
    from obsrvr_sandbox.generator import generate_ledgers

    config = LakeConfig(network_passphrase=SANDBOX, ledgers_per_batch=args.ledgers_per_batch,
                        batches_per_partition=args.batches_per_partition)
    store = open_store(args.out, S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region))
    writer = LakeWriter(store, config)
    writer.write_config()
    report = writer.write(generate_ledgers(args.ledgers, start=ledger_number("--start", args.start), seed=args.seed,
                                           txs_per_ledger=args.txs_per_ledger))
    print(f"generated {report.ledgers} sandbox ledgers ({report.first}…{report.last}) into {report.objects} "
          f"objects at {store.url} (network sandbox: {SANDBOX!r})")
    return exit_codes.OK


def cmd_feed(args: argparse.Namespace) -> int:
    if args.detach:
        return _feed_in_cluster(args)
    from obsrvr_sandbox.feed import SandboxFeed

    feed = SandboxFeed(host=args.host, port=args.port, interval=args.interval, history=args.history).start()
    print(f"sandbox getLedgers feed at {feed.url}: a new ledger every {args.interval}s", flush=True)
    wait_for_stop()
    feed.stop()
    return exit_codes.OK


def _feed_in_cluster(args: argparse.Namespace) -> int:
    """Start the feed as a detached actor of a running cluster and print only its URL, so a
    script passes it on (`obsrvr-ray serve --rpc "$(obsrvr-sandbox feed --detach)"`)."""
    import ray

    from obsrvr_sandbox.feed_actor import start_sandbox_feed

    try:  # never a throwaway local cluster: the feed would end with this command
        ray.init(address=args.ray_address or "auto", logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise ConfigError(f"--detach needs a running Ray cluster (`ray start --head`): {exc}") from exc
    print(start_sandbox_feed(args.interval, args.history, host=args.host, port=args.port), flush=True)
    return exit_codes.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsrvr-sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="build a lake of sandbox ledgers (real signed transactions, "
                         "sandbox network passphrase)")
    gen.add_argument("--out", required=True, help="lake root: a directory or s3://bucket/prefix")
    gen.add_argument("--ledgers", type=int, default=100, help="how many consecutive ledgers")
    gen.add_argument("--start", default=2, help="first ledger sequence")
    gen.add_argument("--seed", type=int, default=1, help="same seed, same ledgers")
    gen.add_argument("--txs-per-ledger", type=int, default=12)
    gen.add_argument("--ledgers-per-batch", type=int, default=1)
    gen.add_argument("--batches-per-partition", type=int, default=64000)
    gen.add_argument("--s3-endpoint-url")
    gen.add_argument("--s3-region")
    gen.set_defaults(func=cmd_generate)
    feed = sub.add_parser("feed", help="serve getLedgers over a sandbox chain that closes a ledger every "
                          "--interval s, until interrupted")
    feed.add_argument("--host", default="127.0.0.1")
    feed.add_argument("--port", type=int, default=8000, help="0: any free port")
    feed.add_argument("--interval", type=float, default=5.0, help="seconds between ledgers")
    feed.add_argument("--history", type=int, default=0, help="ledgers closed before serving")
    feed.add_argument("--detach", action="store_true",
                      help="run in the Ray cluster as a detached actor (`ray stop` ends it), print its URL, return")
    feed.add_argument("--ray-address", help="cluster for --detach (default: RAY_ADDRESS, else the local one)")
    feed.set_defaults(func=cmd_feed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args, "obsrvr-sandbox")


if __name__ == "__main__":
    sys.exit(main())
