"""Helpers the AWS test-server suites share: the credentials the servers are
started with, a control client for /__test__/, boto3 clients, and raw
requests signed by botocore's own SigV4 signer (then altered on purpose).

boto3/botocore (Debian's python3-boto3) are required: a missing one fails
the suites, it never skips them."""

import http.client
import json
import ssl
import sys
import urllib.parse

import pytest

try:
    import boto3
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
    from botocore.exceptions import ClientError
except ImportError:   # a missing client fails the suite, it never skips it green
    pytest.fail("python3-boto3 is missing on %s: install it (scripts/deps test)" % sys.executable, pytrace=False)

REGION = "eu-central-1"
KEY_ID = "AKIAKMSPLUGSUITE0001"
SECRET_KEY = "suite/secret/key/for/kmsplug/aws/server/0"
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.kmsplug-suite-web-identity.sig"
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})

__all__ = ["ClientError", "boto3", "botocore"]


class AwsServer:
    """A running server (URL) with its /__test__/ controls and client factories."""

    def __init__(self, url, cafile=None):
        self.url = url
        self.cafile = cafile
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def http(self, method, path, body=b"", headers=None):
        """(status, headers dict lower-cased, body bytes) of one raw request."""
        if self.url.startswith("https:"):
            ctx = ssl.create_default_context(cafile=self.cafile)
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=15, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def control(self, path, body=None, method="POST"):
        st, _, raw = self.http(method, "/__test__/" + path, json.dumps(body or {}).encode())
        assert st == 200, (path, st, raw)
        return json.loads(raw)

    def clean(self):
        self.control("faults", method="DELETE")
        self.control("reset")
        self.control("requests", method="DELETE")

    def requests(self):
        return self.control("requests", method="GET")["requests"]

    def client(self, service="secretsmanager", region=REGION, key=KEY_ID, secret=SECRET_KEY, token=None,
               config=NO_RETRY, verify=None):
        """A boto3 client; over HTTPS it trusts the test CA unless verify says otherwise."""
        return boto3.client(service, endpoint_url=self.url, region_name=region, aws_access_key_id=key,
                            aws_secret_access_key=secret, aws_session_token=token, config=config,
                            verify=verify if verify is not None else self.cafile)

    def signed(self, op, payload, key=KEY_ID, secret=SECRET_KEY, token=None, region=REGION,
               service="secretsmanager", headers=None):
        """A SecretsManager request signed by botocore's SigV4Auth: (body, headers).

        payload: a JSON-able object, or bytes sent as they are."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager." + op}
        hdrs.update(headers or {})
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.url + "/", data=body, headers=hdrs)
        creds = botocore.credentials.Credentials(key, secret, token)
        botocore.auth.SigV4Auth(creds, service, region).add_auth(req)
        return body, dict(req.headers.items())

    def call_signed(self, op, payload, **kw):
        body, hdrs = self.signed(op, payload, **kw)
        return self.post_json(body, hdrs)

    def post_json(self, body, hdrs):
        st, h, raw = self.http("POST", "/", body, hdrs)
        return st, json.loads(raw) if raw else None


def error_of(excinfo):
    """(code, message, HTTP status) of a botocore ClientError."""
    r = excinfo.value.response
    return r["Error"]["Code"], r["Error"]["Message"], r["ResponseMetadata"]["HTTPStatusCode"]
