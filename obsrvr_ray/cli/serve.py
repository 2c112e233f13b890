"""`obsrvr-ray serve`: the live app on Ray Serve (follower, REST, WebSocket, Arrow Flight), and
`obsrvr-ray rpc serve`: a getLedgers server for local work over a lake's ledgers (a feed of
generated ledgers: `obsrvr-sandbox feed`)."""

from __future__ import annotations

import argparse
import logging
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command, wait_for_stop
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.network import resolve_network
from obsrvr_ray.ranges import check_range, ledger_sequence
from obsrvr_ray.settings_model import Settings, Text, read_yaml, setting, translated, whole


def register(subparsers: argparse._SubParsersAction) -> None:
    serve_p = subparsers.add_parser("serve", help="run the live app: follow RPC, serve REST/WebSocket/Flight")
    serve_p.add_argument("--config",
                         help="YAML settings (the keys of obsrvr_ray/serve/serve_settings.py); flags override")
    serve_p.add_argument("--rpc", help="Stellar RPC URL to follow")
    serve_p.add_argument("--dataset", help="output dataset: a directory or s3://bucket/prefix")
    serve_p.add_argument("--start", help="first ledger when the dataset is empty")
    serve_p.add_argument("--lake", help="data lake for ledgers older than the RPC node's retention")
    serve_p.add_argument("--network", help="network name or passphrase (default: the RPC node's)")
    serve_p.add_argument("--host", default=None, help="HTTP address (default 127.0.0.1)")
    serve_p.add_argument("--port", default=None, help="HTTP port (default 8000)")
    serve_p.add_argument("--flight-port", default=None, help="Arrow Flight port (default 8815)")
    serve_p.add_argument("--dev", action="store_true", help="no authentication; refused unless bound to loopback")
    serve_p.add_argument("--key-store", help="JSON file of hashed API keys (obsrvr-ray keys create ...)")
    serve_p.add_argument("--tls-cert", help="PEM certificate for HTTPS and Flight TLS")
    serve_p.add_argument("--tls-key", help="PEM private key")
    serve_p.add_argument("--ray-address", help="cluster to join (default: RAY_ADDRESS, else a local one)")
    serve_p.add_argument("--detach", action="store_true", help="deploy and return (the app keeps running)")
    serve_p.set_defaults(func=cmd_serve)

    rpc_p = subparsers.add_parser("rpc", help="a local Stellar RPC (getLedgers) server")
    rpc_sub = rpc_p.add_subparsers(dest="rpc_command", required=True)
    add_command(rpc_sub, "serve", "serve getLedgers over HTTP until interrupted", cmd_rpc_serve, RpcServeSettings)


class RpcServeSettings(Settings):
    """The flags of `rpc serve`."""

    lake: Text = setting(..., "--lake", "serve the ledgers --start..--end of this lake")
    start: Annotated[int, translated(ledger_sequence)] = setting(..., "--start", "first ledger served")
    end: Annotated[int, translated(ledger_sequence)] = setting(..., "--end", "last ledger served, inclusive")
    host: Text = setting("127.0.0.1", "--host", "HTTP address")
    port: Annotated[int, whole(0)] = setting(8000, "--port", "HTTP port (0: any free one)")


# flag -> the setting it gives (obsrvr_ray/serve/serve_settings.py), for errors that name the flag
_FLAGS = {"rpc_url": "--rpc", "dataset": "--dataset", "start": "--start", "lake": "--lake", "network": "--network",
          "http_host": "--host", "http_port": "--port", "flight_port": "--flight-port", "security.dev_mode": "--dev",
          "security.key_store": "--key-store", "security.tls_cert": "--tls-cert", "security.tls_key": "--tls-key"}


def _settings(args: argparse.Namespace, rpc_url: str | None) -> tuple[dict, dict[str, str]]:
    """The --config file's settings with the flags given over them, and the flags' names."""
    settings = read_yaml(args.config) if args.config else {}
    flags = {"rpc_url": rpc_url, "dataset": args.dataset, "start": args.start, "lake": args.lake,
             "network": args.network, "http_host": args.host, "http_port": args.port, "flight_port": args.flight_port}
    given = {k: v for k, v in flags.items() if v is not None}
    settings.update(given)
    security = dict(settings.get("security") or {})
    for key, value in (("dev_mode", args.dev or None), ("key_store", args.key_store), ("tls_cert", args.tls_cert),
                       ("tls_key", args.tls_key)):
        if value is not None:
            security[key] = value
            given[f"security.{key}"] = value
    settings["security"] = security
    return settings, {k: v for k, v in _FLAGS.items() if k in given}


def cmd_serve(args: argparse.Namespace) -> int:
    from obsrvr_ray.serve import launch
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    rpc_url = args.rpc
    if not rpc_url and not args.config:
        raise ConfigError("give --rpc URL (or a --config with rpc_url)")
    config = live_config_from_args(*_settings(args, rpc_url))  # checked before a cluster is joined
    sec = config.security
    if sec.dev_mode:
        logging.getLogger("obsrvr_ray").warning(
            "DEV MODE: authentication is OFF (allowed because every server listens on loopback only)")
    base = launch.start(config, args.ray_address)
    ws = base.replace("http", "ws", 1)
    flight_scheme = "grpc+tls" if sec.tls_enabled else "grpc+tcp"
    print("\n".join([
        "== obsrvr-ray live app ==",
        f"following   {config.follower.rpc_url}",
        f"dataset     {config.dataset}",
        f"auth        {'OFF (dev mode, loopback only)' if sec.dev_mode else 'on: X-API-Key or Authorization: Bearer'}",
        f"REST        {base}/v1/token-transfers?limit=10      docs: {base}/docs",
        f"WebSocket   {ws}/v1/subscribe   send {{\"action\": \"subscribe\", \"event_types\": [\"transfer\"]}}",
        f"Flight      {flight_scheme}://{config.flight_host}:{config.flight_port}   "
        f"ticket {{\"table\": \"token_transfers\"}}",
        f"health      {base}/health   ready: {base}/health/ready   metrics: {base}/metrics",
    ]), flush=True)
    if args.detach:
        return exit_codes.OK
    wait_for_stop()
    launch.stop()
    return exit_codes.OK


def cmd_rpc_serve(args: RpcServeSettings) -> int:
    from obsrvr_ray.objectstore import LocalStore
    from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
    from obsrvr_ray.sources.lake_source import LakeSource

    start, end = args.start, args.end
    check_range(start, end)
    source = LakeSource(LocalStore(args.lake))
    archive = LedgerArchive()
    archive.add_all(r.data for r in source.records(start, end) if r.ok)
    server = RpcServer(archive, resolve_network(None, source.network_passphrase), host=args.host,
                       port=args.port).start()
    print(f"serving getLedgers for ledgers {archive.window()} of {args.lake} at {server.url}", flush=True)
    wait_for_stop()
    server.stop()
    return exit_codes.OK
