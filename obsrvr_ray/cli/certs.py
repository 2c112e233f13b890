"""`obsrvr-ray certs DIR`: a throwaway CA with server and client certificates, for trying mutual
TLS locally and for tests (obsrvr_ray/security/tls.py makes them).

Besides a client certificate per `--clients` name it writes the ones a listener must refuse (an
expired one, a revoked one with crl.pem revoking it, one from another CA), and prints the
`security` settings using them. Not for production: use your PKI (e.g. cert-manager, see kuberay/).
"""

from __future__ import annotations

import argparse
import json
from typing import Annotated

from obsrvr_ray import exit_codes
from obsrvr_ray.cli.common import add_command
from obsrvr_ray.security.tls import generate_pki
from obsrvr_ray.settings_model import Settings, Text, Words, setting, whole


class CertsSettings(Settings):
    directory: Text = setting(..., "directory", "where to write the PEM files (created if missing)", "positional")
    hosts: Words = setting(("localhost", "127.0.0.1", "::1"), "--hosts",
                           "comma-separated names/addresses the server certificate is for")
    clients: Words = setting(("admin", "reader", "processor"), "--clients",
                             "comma-separated client names; each gets CN=<name> and the URI SAN "
                             "spiffe://obsrvr-ray.test/<name>, mapped to the role of the same name when it is one")
    days: Annotated[int, whole(1)] = setting(30, "--days", "validity in days")


def cmd_certs(args: CertsSettings) -> int:
    pki = generate_pki(args.directory, hosts=args.hosts, clients=args.clients, days=args.days)
    roles = {"admin", "reader", "processor"}
    security = {"tls_cert": str(pki.server.cert), "tls_key": str(pki.server.key),
                "tls": {"client_ca": str(pki.server.ca_cert), "client_cert": "required", "crl": str(pki.crl),
                        "identities": {files.identity: [name] for name, files in pki.clients.items()
                                       if name in roles}}}
    for name, files in pki.clients.items():
        print(f"client {name}: {files.cert} {files.key} ({files.identity})")
    print(json.dumps({"security": security}, indent=1))
    return exit_codes.OK


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_command(subparsers, "certs", "write a test CA, server and client certificates for mutual TLS",
                       cmd_certs, CertsSettings)
