"""The server's protocol edges with raw requests: JSON 1.1 framing errors,
STS's XML, IMDSv2 and ECS endpoints, test controls, the request log's
redaction, and the process itself."""

import json
import os
import socket
import subprocess

import pytest

from aws_test_helpers import SECRET_KEY, WEB_TOKEN
from testserver.launcher import PYTHON

HERE = os.path.dirname(os.path.abspath(__file__))


def test_framing_errors(aws, uniq):
    st, ans = aws.call_signed("NoSuchOp", {})
    assert (st, ans) == (400, {"__type": "UnknownOperationException"})
    st, ans = aws.call_signed("GetSecretValue", b"{not json")   # signed: only the framing is wrong
    assert st == 400 and ans["__type"] == "SerializationException"
    st, ans = aws.call_signed("GetSecretValue", {})
    assert st == 400 and ans["__type"] == "ValidationException" and "secretId" in ans["message"]
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": 7})
    assert st == 400 and ans["__type"] == "SerializationException"
    st, h, raw = aws.http("GET", "/nowhere")
    assert st == 404 and json.loads(raw)["__type"] == "UnknownOperationException"
    assert h["content-type"] == "application/x-amz-json-1.1" and h["x-amzn-requestid"]


def test_sts_query_protocol_answers_xml(aws):
    form = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012" \
           "%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=" + WEB_TOKEN
    st, h, raw = aws.http("POST", "/", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400 and b"<Code>ValidationError</Code>" in raw and b"roleSessionName" in raw  # "s" is too short
    st, h, raw = aws.http("POST", "/", form.replace("Name=s&", "Name=ss&").encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200 and h["content-type"] == "text/xml"
    assert b"<AssumeRoleWithWebIdentityResponse" in raw and b"<SessionToken>" in raw
    st, h, raw = aws.http("POST", "/", b"Action=Nope&Version=2011-06-15",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400 and b"<Code>InvalidAction</Code>" in raw and b"<Type>Sender</Type>" in raw
    st, h, raw = aws.http("POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 403 and b"<Code>MissingAuthenticationToken</Code>" in raw
    # the web identity token never reaches the request log
    log = json.dumps(aws.requests())
    assert WEB_TOKEN not in log and "WebIdentityToken=sha256:" in log


def test_imdsv2(aws):
    assert aws.http("GET", "/latest/meta-data/iam/security-credentials/")[0] == 401   # IMDSv1 is off
    assert aws.http("PUT", "/latest/api/token")[0] == 400                             # TTL header required
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}
    assert aws.http("PUT", "/latest/api/token", headers=ttl)[0] == 400
    fwd = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"}
    assert aws.http("PUT", "/latest/api/token", headers=fwd)[0] == 403
    st, h, token = aws.http("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert st == 200 and h["x-aws-ec2-metadata-token-ttl-seconds"] == "60"
    auth = {"X-aws-ec2-metadata-token": token.decode()}
    st, _, role = aws.http("GET", "/latest/meta-data/iam/security-credentials/", headers=auth)
    assert (st, role) == (200, b"kmsplug-instance-role")
    st, _, raw = aws.http("GET", "/latest/meta-data/iam/security-credentials/kmsplug-instance-role", headers=auth)
    creds = json.loads(raw)
    assert st == 200 and creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert creds["AccessKeyId"].startswith("ASIA") and creds["Expiration"].endswith("Z")
    again = json.loads(aws.http("GET", "/latest/meta-data/iam/security-credentials/kmsplug-instance-role",
                                headers=auth)[2])
    assert again["AccessKeyId"] == creds["AccessKeyId"]          # served until close to expiry
    assert aws.http("GET", "/latest/meta-data/iam/security-credentials/other", headers=auth)[0] == 404
    aws.control("clock", {"advance": 61})
    assert aws.http("GET", "/latest/meta-data/iam/security-credentials/", headers=auth)[0] == 401  # expired
    log = json.dumps(aws.requests())
    assert token.decode() not in log


def test_imds_rotates_credentials_before_expiry(aws):
    token = aws.http("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})[2]
    path = "/latest/meta-data/iam/security-credentials/kmsplug-instance-role"
    first = json.loads(aws.http("GET", path, headers={"X-aws-ec2-metadata-token": token.decode()})[2])
    aws.control("clock", {"advance": 3600 - 299})
    second = json.loads(aws.http("GET", path, headers={"X-aws-ec2-metadata-token": token.decode()})[2])
    assert second["AccessKeyId"] != first["AccessKeyId"]


def test_ecs_endpoint_without_auth_token(aws):
    st, h, raw = aws.http("GET", "/v2/credentials/abc")
    c = json.loads(raw)
    assert st == 200 and c["AccessKeyId"].startswith("ASIA") and c["Token"] and c["RoleArn"]
    assert aws.http("POST", "/v2/credentials/abc")[0] == 405


def test_faults_delay_and_drop(aws, uniq):
    aws.control("faults", {"match_headers": {"X-Amz-Target": "CreateSecret"}, "drop": True})
    with pytest.raises((ConnectionError, OSError)):
        aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "x"})
    aws.control("faults", {"match_headers": {"X-Amz-Target": "CreateSecret"}, "delay_ms": 50})
    assert aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "x"})[0] == 200
    aws.control("faults", {"path": "^/$", "status": 503, "code": "ServiceUnavailable", "message": "busy"})
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": uniq})
    assert (st, ans) == (503, {"__type": "ServiceUnavailable", "Message": "busy"})


def test_request_log_keeps_no_secret(aws, uniq):
    aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "sk-very-secret-value"})
    aws.call_signed("PutSecretValue", {"SecretId": uniq, "SecretBinary": "c2VjcmV0Ynl0ZXM="})
    aws.call_signed("GetSecretValue", {"SecretId": uniq}, key="AKIAUNKNOWN000000000", token="session-secret")
    log = aws.requests()
    text = json.dumps(log)
    for secret in ("sk-very-secret-value", "c2VjcmV0Ynl0ZXM=", "session-secret", SECRET_KEY):
        assert secret not in text
    assert [json.loads(e["body"]).get("SecretId", json.loads(e["body"]).get("Name")) for e in log] == [uniq] * 3
    sig = log[0]["headers"]["Authorization"]
    assert "Credential=" in sig and "Signature=sha256:" in sig
    assert log[2]["headers"]["X-Amz-Security-Token"].startswith("sha256:")


def test_seed_makes_arns_and_ids_reproducible(start_server):
    def run():
        srv, _ = start_server("--seed", "42")
        st, ans = srv.call_signed("CreateSecret", {"Name": "seeded", "SecretString": "x"})
        return ans["ARN"], ans["VersionId"]
    first, second = run(), run()
    assert first == second
    srv, _ = start_server()
    assert srv.call_signed("CreateSecret", {"Name": "seeded", "SecretString": "x"})[1]["ARN"] != first[0]


def test_reset_and_control_errors(aws, uniq):
    aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "x"})
    aws.control("reset", {"seed": 1})
    assert aws.call_signed("GetSecretValue", {"SecretId": uniq})[1]["__type"] == "ResourceNotFoundException"
    assert aws.http("POST", "/__test__/clock", b'{"advance": "soon"}')[0] == 400
    assert aws.http("POST", "/__test__/credentials", b'{"access_key_id": 1}')[0] == 400
    assert aws.http("POST", "/__test__/web-identity-tokens", b'{"tokens": [""]}')[0] == 400
    assert aws.http("POST", "/__test__/deny", b'{"action": "("}')[0] == 400
    assert aws.http("POST", "/__test__/nothing", b'{}')[0] == 404


def test_command_line_errors():
    server = os.path.join(HERE, "server.py")
    for bad in (["--issued-credential-ttl", "10"], ["--access-key-id", ""], ["--tls-cert", "x.pem"]):
        r = subprocess.run([PYTHON, server] + bad, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "error:" in r.stderr, (bad, r.stderr)


def test_exits_cleanly_on_sigterm(start_server):
    srv, proc = start_server()
    assert srv.http("GET", "/__test__/health")[0] == 200
    assert proc.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2).close()


def test_expire_control_and_planned_deletion_listing(aws, uniq):
    form = ("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012"
            "%3Arole%2Fr&RoleSessionName=gw&WebIdentityToken=" + WEB_TOKEN).encode()
    raw = aws.http("POST", "/", form, {"Content-Type": "application/x-www-form-urlencoded"})[2].decode()
    pick = lambda tag: raw.split("<%s>" % tag)[1].split("</%s>" % tag)[0]   # noqa: E731
    key, secret, token = pick("AccessKeyId"), pick("SecretAccessKey"), pick("SessionToken")
    assert aws.call_signed("CreateSecret", {"Name": uniq, "SecretString": "x"}, key=key, secret=secret,
                           token=token)[0] == 200
    assert aws.control("credentials/expire", {"access_key_id": key}) == {"expired": 1}
    st, ans = aws.call_signed("GetSecretValue", {"SecretId": uniq}, key=key, secret=secret, token=token)
    assert (st, ans["__type"]) == (400, "ExpiredTokenException")
    aws.call_signed("DeleteSecret", {"SecretId": uniq, "RecoveryWindowInDays": 10})
    names = lambda body: [s["Name"] for s in aws.call_signed("ListSecrets", body)[1]["SecretList"]]  # noqa: E731
    assert uniq not in names({})
    assert uniq in names({"IncludePlannedDeletion": True})
    st, ans = aws.call_signed("UpdateSecret", {"SecretId": uniq, "Description": "x"})
    assert (st, ans["__type"]) == (400, "InvalidRequestException")
