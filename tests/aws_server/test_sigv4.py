"""SigV4 verification with raw requests: botocore's own signer signs each
request, then the test alters one thing and checks AWS's answer."""

import hashlib
import json

import pytest

from aws_test_helpers import KEY_ID, SECRET_KEY


@pytest.fixture
def secret(aws, uniq):
    st, body = aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "raw"})
    assert st == 200, body
    return uniq


def test_a_correctly_signed_raw_request_passes(aws, secret):
    st, body = aws.call_signed("GetSecretValue", {"SecretId": secret})
    assert st == 200 and body["SecretString"] == "raw"


def test_tampered_body_is_refused(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    st, ans = aws.post_json(body.replace(b"}", b' }'), hdrs)
    assert st == 400 and ans["__type"] == "InvalidSignatureException"
    assert ans["message"].startswith("The request signature we calculated does not match")
    assert "The Canonical String for this request should have been" in ans["message"]
    assert SECRET_KEY not in ans["message"]


def test_tampered_signed_header_is_refused(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    hdrs["X-Amz-Target"] = "secretsmanager.DescribeSecret"
    st, ans = aws.post_json(body, hdrs)
    assert (st, ans["__type"]) == (400, "InvalidSignatureException")


def test_unsigned_extra_header_is_fine(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    hdrs["X-Unsigned"] = "whatever"
    assert aws.post_json(body, hdrs)[0] == 200


def test_wrong_service_in_scope(aws, secret):
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": secret}, service="kms")
    assert (st, ans) == (400, {"__type": "InvalidSignatureException",
                               "message": "Credential should be scoped to correct service: 'secretsmanager'. "})


def test_missing_and_malformed_authorization(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    no_auth = {k: v for k, v in hdrs.items() if k != "Authorization"}
    assert aws.post_json(body, no_auth) == (400, {"__type": "MissingAuthenticationTokenException",
                                                  "message": "Missing Authentication Token"})
    broken = dict(hdrs, Authorization=hdrs["Authorization"].split(", Signature=")[0])
    st, ans = aws.post_json(body, broken)
    assert st == 400 and ans["__type"] == "IncompleteSignatureException" and "'Signature'" in ans["message"]
    assert "Signature=" not in ans["message"].split("Authorization=")[0]
    other = dict(hdrs, Authorization="AWS4-HMAC-SHA512 Credential=x")
    assert aws.post_json(body, other)[1]["__type"] == "IncompleteSignatureException"
    no_date = {k: v for k, v in hdrs.items() if k != "X-Amz-Date"}
    assert aws.post_json(body, no_date)[1]["__type"] == "IncompleteSignatureException"


def test_host_must_be_signed(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    hdrs["Authorization"] = hdrs["Authorization"].replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;")
    st, ans = aws.post_json(body, hdrs)
    assert st == 400 and "'Host'" in ans["message"]


def test_content_sha256_header_must_match_the_body(aws, secret):
    good = {"X-Amz-Content-SHA256": hashlib.sha256(json.dumps({"SecretId": secret}).encode()).hexdigest()}
    assert aws.call_signed("GetSecretValue", {"SecretId": secret}, headers=good)[0] == 200
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": secret},
                              headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert st == 400 and "x-amz-content-sha256" in ans["message"]


def test_session_token_rules(aws, secret):
    sts_ok = aws.control("credentials", {"access_key_id": "AKIASESSIONSTATIC01", "secret_access_key": "s3cr3t",
                                         "session_token": "tok-1"})
    assert sts_ok == {"added": "AKIASESSIONSTATIC01"}
    assert aws.call_signed("GetSecretValue", {"SecretId": secret}, key="AKIASESSIONSTATIC01", secret="s3cr3t",
                           token="tok-1")[0] == 200
    for token in (None, "tok-2"):
        st, ans = aws.call_signed("GetSecretValue", {"SecretId": secret}, key="AKIASESSIONSTATIC01",
                                  secret="s3cr3t", token=token)
        assert (st, ans["__type"]) == (400, "UnrecognizedClientException")
    # a long-term key with a token it does not have
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": secret}, key=KEY_ID, token="tok-1")
    assert ans["__type"] == "UnrecognizedClientException"


def test_date_in_scope_must_match_x_amz_date(aws, secret):
    body, hdrs = aws.signed("GetSecretValue", {"SecretId": secret})
    hdrs["Authorization"] = hdrs["Authorization"].replace("/%s/" % hdrs["X-Amz-Date"][:8], "/20200101/")
    st, ans = aws.post_json(body, hdrs)
    assert st == 400 and ans["message"].startswith("Date in Credential scope does not match")
