"""`obsrvr-ray keys create|list|revoke|rotate`: manage API keys in a key store file.

A running server re-reads the store within a second of a change, so a revoke here takes effect
without a restart. `create` and `rotate` print the key alone on stdout (and the details on
stderr), so `KEY=$(obsrvr-ray keys create ...)` captures exactly the key; it is shown only once.
Errors (unknown key id, bad role, unreadable store) are ObsrvrErrors: `obsrvr-ray`'s main reports them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from obsrvr_ray import exit_codes
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.keystore import KeyStore, utcnow
from obsrvr_ray.security.policy import ROLES


def _store(args: argparse.Namespace) -> KeyStore:
    if not args.store:
        raise ConfigError("--store is required (or set OBSRVR_KEY_STORE)")
    return KeyStore(args.store)


def _details(record: dict) -> str:
    expires = record["expires_at"] or "never"
    return (f"key {record['key_id']} ({record['prefix']}) name={record['name']!r} roles={','.join(record['roles'])} "
            f"expires={expires}")


def cmd_create(args: argparse.Namespace) -> int:
    expires_at = utcnow() + dt.timedelta(days=args.expires_days) if args.expires_days else None
    record, secret = _store(args).create(args.roles, name=args.name, expires_at=expires_at)
    print(f"created {_details(record.public(utcnow()))}; store the key now, it is not shown again", file=sys.stderr)
    print(secret)
    return exit_codes.OK


def cmd_list(args: argparse.Namespace) -> int:
    now = utcnow()
    records = [k.public(now) for k in _store(args).list()]
    if args.json:
        print(json.dumps(records, indent=1))
        return exit_codes.OK
    columns = ("key_id", "prefix", "name", "roles", "state", "created_at", "expires_at", "last_used_at")
    rows = [[",".join(r[c]) if c == "roles" else str(r[c] or "-") for c in columns] for r in records]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return exit_codes.OK


def cmd_revoke(args: argparse.Namespace) -> int:
    record = _store(args).revoke(args.key_id, last_admin=args.last_admin)
    print(f"revoked {_details(record.public(utcnow()))}", file=sys.stderr)
    return exit_codes.OK


def cmd_rotate(args: argparse.Namespace) -> int:
    record, secret = _store(args).rotate(args.key_id)
    print(f"rotated {_details(record.public(utcnow()))}; the old key no longer works", file=sys.stderr)
    print(secret)
    return exit_codes.OK


def _days(value: str) -> float:
    days = float(value)
    if days <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return days


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `keys` and its subcommands on the main parser's subparsers."""
    keys = subparsers.add_parser("keys", help="manage API keys (create, list, revoke, rotate)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=os.environ.get("OBSRVR_KEY_STORE"),
                        help="key store file (default: $OBSRVR_KEY_STORE); created mode 0600 if missing")

    create = keys_sub.add_parser("create", parents=[common], help="create a key and print it (once)")
    create.add_argument("--roles", default="reader", help=f"comma-separated roles from {', '.join(ROLES)} "
                        "(default reader)")
    create.add_argument("--expires-days", type=_days, help="days until the key expires (default: never)")
    create.add_argument("--name", default="", help="who or what the key is for")
    create.set_defaults(func=cmd_create)

    lst = keys_sub.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    lst.add_argument("--json", action="store_true", help="JSON instead of a table")
    lst.set_defaults(func=cmd_list)

    revoke = keys_sub.add_parser("revoke", parents=[common], help="stop a key working")
    revoke.add_argument("key_id")
    revoke.add_argument("--last-admin", action="store_true",
                        help="revoke it even when it is the last active admin key (the admin API then refuses "
                             "every key until `keys create --roles admin`)")
    revoke.set_defaults(func=cmd_revoke)

    rotate = keys_sub.add_parser("rotate", parents=[common], help="new secret for a key (same id and roles); "
                                 "the old one stops working")
    rotate.add_argument("key_id")
    rotate.set_defaults(func=cmd_rotate)
    return keys
