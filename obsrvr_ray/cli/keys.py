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
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.security.keystore import KeyStore, utcnow
from obsrvr_ray.security.policy import ROLES, check_roles
from obsrvr_ray.settings_model import Flag, Positive, Settings, Text, setting, translated


class KeysFlags(Settings):
    """The flag of every `keys` verb: the store."""

    store: Text | None = setting(None, "--store", "key store file (default: $OBSRVR_KEY_STORE); created mode 0600 "
                                 "if missing")


class CreateSettings(KeysFlags):
    roles: Annotated[tuple[str, ...], translated(check_roles)] = setting(
        ("reader",), "--roles", f"comma-separated roles from {', '.join(ROLES)} (default reader)")
    expires_days: Positive | None = setting(None, "--expires-days", "days until the key expires (default: never)")
    name: str = setting("", "--name", "who or what the key is for")


class ListSettings(KeysFlags):
    as_json: Flag = setting(False, "--json", "JSON instead of a table", "on")


class RevokeSettings(KeysFlags):
    key_id: Text = setting(..., "key_id", "the key's id", "positional")
    last_admin: Flag = setting(False, "--last-admin", "revoke it even when it is the last active admin key (the "
                               "admin API then refuses every key until `keys create --roles admin`)", "on")


class RotateSettings(KeysFlags):
    key_id: Text = setting(..., "key_id", "the key's id", "positional")


def _store(args: KeysFlags) -> KeyStore:
    store = args.store or os.environ.get("OBSRVR_KEY_STORE")
    if not store:
        raise ConfigError("--store is required (or set OBSRVR_KEY_STORE)")
    return KeyStore(store)


def _details(record: dict) -> str:
    expires = record["expires_at"] or "never"
    return (f"key {record['key_id']} ({record['prefix']}) name={record['name']!r} roles={','.join(record['roles'])} "
            f"expires={expires}")


def cmd_create(args: CreateSettings) -> int:
    expires_at = utcnow() + dt.timedelta(days=args.expires_days) if args.expires_days else None
    record, secret = _store(args).create(args.roles, name=args.name, expires_at=expires_at)
    print(f"created {_details(record.public(utcnow()))}; store the key now, it is not shown again", file=sys.stderr)
    print(secret)
    return exit_codes.OK


def cmd_list(args: ListSettings) -> int:
    now = utcnow()
    records = [k.public(now) for k in _store(args).list()]
    if args.as_json:
        print(json.dumps(records, indent=1))
        return exit_codes.OK
    columns = ("key_id", "prefix", "name", "roles", "state", "created_at", "expires_at", "last_used_at")
    rows = [[",".join(r[c]) if c == "roles" else str(r[c] or "-") for c in columns] for r in records]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return exit_codes.OK


def cmd_revoke(args: RevokeSettings) -> int:
    record = _store(args).revoke(args.key_id, last_admin=args.last_admin)
    print(f"revoked {_details(record.public(utcnow()))}", file=sys.stderr)
    return exit_codes.OK


def cmd_rotate(args: RotateSettings) -> int:
    record, secret = _store(args).rotate(args.key_id)
    print(f"rotated {_details(record.public(utcnow()))}; the old key no longer works", file=sys.stderr)
    print(secret)
    return exit_codes.OK


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `keys` and its subcommands on the main parser's subparsers."""
    keys = subparsers.add_parser("keys", help="manage API keys (create, list, revoke, rotate)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    add_command(keys_sub, "create", "create a key and print it (once)", cmd_create, CreateSettings)
    add_command(keys_sub, "list", "list keys (never the keys themselves)", cmd_list, ListSettings)
    add_command(keys_sub, "revoke", "stop a key working", cmd_revoke, RevokeSettings)
    add_command(keys_sub, "rotate", "new secret for a key (same id and roles); the old one stops working", cmd_rotate,
                RotateSettings)
    return keys
