"""The curl tool's --aws-sigv4 (libcurl's CURLOPT_AWS_SIGV4, the signer the
aws_secret_manager plugin is to use) against the server: the signatures
libcurl computes verify, with and without a session token, and a wrong
secret is refused.  A missing curl fails the suite."""

import json
import shutil
import subprocess

import pytest

from aws_test_helpers import KEY_ID, REGION, SECRET_KEY

CURL = shutil.which("curl", path="/usr/bin:/bin")
if CURL is None:
    pytest.fail("curl is missing: install it (scripts/deps test)", pytrace=False)


def curl(url, op, payload, secret=SECRET_KEY, token=None):
    cmd = [CURL, "-sS", "--aws-sigv4", "aws:amz:%s:secretsmanager" % REGION, "--user", "%s:%s" % (KEY_ID, secret),
           "-H", "X-Amz-Target: secretsmanager." + op, "-H", "Content-Type: application/x-amz-json-1.1",
           "-w", "\n%{http_code}", "--data-binary", json.dumps(payload), url + "/"]
    if token:
        cmd[1:1] = ["-H", "X-Amz-Security-Token: " + token]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_libcurl_sigv4_verifies(aws, uniq):
    assert curl(aws.url, "CreateSecret", {"Name": uniq, "SecretString": "from-curl"})[0] == 200
    st, ans = curl(aws.url, "GetSecretValue", {"SecretId": uniq})
    assert (st, ans["SecretString"]) == (200, "from-curl")
    st, ans = curl(aws.url, "GetSecretValue", {"SecretId": uniq}, secret="wrong")
    assert (st, ans["__type"]) == (400, "InvalidSignatureException")


def test_libcurl_with_session_token(start_server, uniq):
    srv, _ = start_server("--session-token", "curl-session")
    assert curl(srv.url, "CreateSecret", {"Name": uniq, "SecretString": "x"}, token="curl-session")[0] == 200
    st, ans = curl(srv.url, "GetSecretValue", {"SecretId": uniq})
    assert (st, ans["__type"]) == (400, "UnrecognizedClientException")
    signed = srv.requests()[0]["headers"]["Authorization"]
    assert "x-amz-security-token" in signed      # libcurl signs every x-amz-* header it is given
