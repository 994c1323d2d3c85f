"""Drive the server with Debian's `aws` CLI (package awscli, /usr/bin/aws)
through --endpoint-url: create, get, put, list, delete, restore and an
error, as an operator would.  A missing CLI fails the suite."""

import json
import os
import subprocess

import pytest

from aws_test_helpers import KEY_ID, REGION, SECRET_KEY

AWS_CLI = "/usr/bin/aws"   # Debian's; an `aws` earlier on PATH may be another install
if not os.access(AWS_CLI, os.X_OK):
    pytest.fail("%s is missing: install the awscli package (scripts/deps test)" % AWS_CLI, pytrace=False)


@pytest.fixture
def cli(aws, tmp_path):
    """Runs `aws secretsmanager ...` against the server; returns (exit status, parsed stdout, stderr)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION, "AWS_PAGER": "",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}

    def run(*args):
        r = subprocess.run([AWS_CLI, "--endpoint-url", aws.url, "--output", "json", "secretsmanager"]
                           + list(args), env=env, capture_output=True, text=True, timeout=120)
        out = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, out, r.stderr
    return run


def ok(result):
    rc, out, err = result
    assert rc == 0, err
    return out


def test_cli_lifecycle(cli, uniq):
    created = ok(cli("create-secret", "--name", uniq, "--secret-string", "cli-v1", "--description", "from cli",
                     "--tags", "Key=owner,Value=cli"))
    assert created["Name"] == uniq and created["ARN"].startswith("arn:aws:secretsmanager:" + REGION)
    assert ok(cli("get-secret-value", "--secret-id", uniq))["SecretString"] == "cli-v1"
    put = ok(cli("put-secret-value", "--secret-id", uniq, "--secret-string", "cli-v2"))
    assert put["VersionStages"] == ["AWSCURRENT"]
    assert ok(cli("get-secret-value", "--secret-id", uniq))["SecretString"] == "cli-v2"
    assert ok(cli("get-secret-value", "--secret-id", uniq, "--version-stage", "AWSPREVIOUS"))["SecretString"] == "cli-v1"
    for i in range(3):
        ok(cli("create-secret", "--name", "%s/p%d" % (uniq, i), "--secret-string", "x"))
    # the CLI paginates by itself (page size 1): every secret comes back once
    listed = ok(cli("list-secrets", "--filters", "Key=name,Values=" + uniq, "--page-size", "1"))
    assert [s["Name"] for s in listed["SecretList"]] == [uniq] + ["%s/p%d" % (uniq, i) for i in range(3)]
    deleted = ok(cli("delete-secret", "--secret-id", uniq, "--recovery-window-in-days", "7"))
    assert deleted["Name"] == uniq and "DeletionDate" in deleted
    rc, _, err = cli("get-secret-value", "--secret-id", uniq)
    assert rc != 0 and "InvalidRequestException" in err and "marked for deletion" in err
    ok(cli("restore-secret", "--secret-id", uniq))
    assert ok(cli("get-secret-value", "--secret-id", uniq))["SecretString"] == "cli-v2"
    ok(cli("delete-secret", "--secret-id", uniq, "--force-delete-without-recovery"))
    rc, _, err = cli("describe-secret", "--secret-id", uniq)
    assert rc != 0 and "ResourceNotFoundException" in err


def test_cli_errors(cli, aws, uniq):
    rc, _, err = cli("get-secret-value", "--secret-id", uniq)
    assert rc == 254 and "(ResourceNotFoundException)" in err and "can't find the specified secret" in err
    aws.control("clock", {"skew": 600})
    rc, _, err = cli("list-secrets")
    assert rc == 254 and "(InvalidSignatureException)" in err and "Signature expired" in err
