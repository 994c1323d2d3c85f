#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""Vault-compatible HTTP(S) test server: the entry point.

Implements the parts of HashiCorp Vault's HTTP API that kmsplug's Vault
plugin and its tests use: KV v2 (and a minimal KV v1), token auth, ACL
policies, the cert and AppRole auth methods, namespaces (Enterprise style),
sys/health, sys/seal-status, sys/mounts, sys/auth, plus optional test-control
endpoints under /__test__/ for fault injection and request inspection.

The Vault side lives in vaultsim/ (next to this file), the HTTP/TLS/test
control side in tests/testserver/.  Run with Debian's /usr/bin/python3.
See README.md next to this file.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]   # vaultsim/, then tests/ for testserver/

from testserver import runner  # noqa: E402
from vaultsim.core import Vault  # noqa: E402
from vaultsim.protocol import VaultProtocol  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Vault-compatible test server")
    runner.add_common_args(ap)
    ap.add_argument("--root-token", default="root")
    ap.add_argument("--mount", action="append", default=[])
    ap.add_argument("--namespace", action="append", default=[])
    args = ap.parse_args(argv)
    runner.check_common_args(ap, args)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    vault = Vault(args.root_token, args.mount, args.namespace)
    return runner.serve(VaultProtocol(vault), args)


if __name__ == "__main__":
    sys.exit(main())
