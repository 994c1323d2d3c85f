#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""AWS Secrets Manager-compatible HTTP(S) test server: the entry point.

Secrets Manager's JSON 1.1 API with real SigV4 verification, STS
AssumeRoleWithWebIdentity/GetCallerIdentity, an IMDSv2 and an ECS
credentials endpoint, plus the shared /__test__/ controls.  The AWS side
lives in awssim/ (next to this file), the HTTP/TLS/test-control side in
tests/testserver/.  Run with Debian's /usr/bin/python3.  See README.md.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]   # awssim/, then tests/ for testserver/

from testserver import runner  # noqa: E402
from awssim.protocol import AwsProtocol  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description="AWS Secrets Manager-compatible test server")
    runner.add_common_args(ap)
    ap.add_argument("--region", default="us-east-1", help="the region requests must be signed for")
    ap.add_argument("--account-id", default="123456789012")
    ap.add_argument("--access-key-id", default="AKIAKMSPLUGTEST00001")
    ap.add_argument("--secret-access-key", default="kmsplug/test/secret/access/key/0000000000")
    ap.add_argument("--session-token", default=None,
                    help="make the static credentials session credentials (X-Amz-Security-Token required)")
    ap.add_argument("--web-identity-token", action="append", default=[],
                    help="a web identity token AssumeRoleWithWebIdentity accepts (repeatable)")
    ap.add_argument("--instance-role", default="kmsplug-instance-role", help="the role IMDS names")
    ap.add_argument("--issued-credential-ttl", type=int, default=3600,
                    help="lifetime in seconds of the credentials IMDS and ECS hand out")
    ap.add_argument("--ecs-auth-token", default=None,
                    help="Authorization value the ECS endpoint requires (AWS_CONTAINER_AUTHORIZATION_TOKEN)")
    ap.add_argument("--seed", type=int, default=None, help="seed ARN suffixes, ids and issued keys")
    args = ap.parse_args(argv)
    runner.check_common_args(ap, args)
    if not args.access_key_id or not args.secret_access_key:
        ap.error("--access-key-id and --secret-access-key must not be empty")
    if not 900 <= args.issued_credential_ttl <= 43200:
        ap.error("--issued-credential-ttl must be between 900 and 43200 seconds")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return runner.serve(AwsProtocol(args), args)


if __name__ == "__main__":
    sys.exit(main())
