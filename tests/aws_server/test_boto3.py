"""Drive the server with boto3 (Debian's python3-boto3): Secrets Manager's
operations, its errors, and credentials from STS, IMDS and ECS, as a real
AWS client sees them."""

import base64
import concurrent.futures
import datetime

import pytest

from aws_test_helpers import KEY_ID, REGION, SECRET_KEY, WEB_TOKEN, ClientError, botocore, error_of

ROLE = "arn:aws:iam::123456789012:role/kmsplug-gateway"


@pytest.fixture
def sm(aws):
    return aws.client()


def test_create_get_put_versions_and_stages(sm, uniq):
    r = sm.create_secret(Name=uniq, SecretString="v1", Description="a virtual key",
                         Tags=[{"Key": "owner", "Value": "litellm"}])
    assert r["Name"] == uniq and r["ARN"].startswith("arn:aws:secretsmanager:%s:123456789012:secret:%s-" % (REGION, uniq))
    assert len(r["ARN"]) == len(r["ARN"].rsplit("-", 1)[0]) + 7
    v1 = r["VersionId"]
    g = sm.get_secret_value(SecretId=uniq)
    assert (g["SecretString"], g["VersionId"], g["VersionStages"]) == ("v1", v1, ["AWSCURRENT"])
    assert isinstance(g["CreatedDate"], datetime.datetime)
    p = sm.put_secret_value(SecretId=uniq, SecretString="v2")
    assert p["VersionStages"] == ["AWSCURRENT"] and p["VersionId"] != v1
    assert sm.get_secret_value(SecretId=uniq)["SecretString"] == "v2"
    assert sm.get_secret_value(SecretId=uniq, VersionStage="AWSPREVIOUS")["SecretString"] == "v1"
    assert sm.get_secret_value(SecretId=uniq, VersionId=v1)["VersionStages"] == ["AWSPREVIOUS"]
    sm.put_secret_value(SecretId=uniq, SecretString="v3")
    stages = sm.describe_secret(SecretId=uniq)["VersionIdsToStages"]
    assert v1 not in stages and sorted(stages.values()) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    assert sm.get_secret_value(SecretId=uniq, VersionId=v1)["SecretString"] == "v1"   # unlabeled, kept
    # by full ARN and by partial ARN (without the random suffix)
    assert sm.get_secret_value(SecretId=r["ARN"])["SecretString"] == "v3"
    assert sm.get_secret_value(SecretId=r["ARN"][:-7])["SecretString"] == "v3"


def test_binary_secret_round_trips(sm, uniq):
    sm.create_secret(Name=uniq, SecretBinary=b"\x00\xffbin")
    g = sm.get_secret_value(SecretId=uniq)
    assert g["SecretBinary"] == b"\x00\xffbin" and "SecretString" not in g


def test_client_request_token_idempotency(sm, uniq):
    tok = "a" * 32 + "-retry"
    r1 = sm.create_secret(Name=uniq, SecretString="x", ClientRequestToken=tok)
    r2 = sm.create_secret(Name=uniq, SecretString="x", ClientRequestToken=tok)   # a retried create
    assert r1["VersionId"] == r2["VersionId"] == tok
    with pytest.raises(ClientError) as ei:
        sm.create_secret(Name=uniq, SecretString="other", ClientRequestToken=tok)
    assert error_of(ei)[0] == "ResourceExistsException"
    ptok = "b" * 40
    sm.put_secret_value(SecretId=uniq, SecretString="y", ClientRequestToken=ptok)
    sm.put_secret_value(SecretId=uniq, SecretString="y", ClientRequestToken=ptok)   # same: ignored
    assert sm.get_secret_value(SecretId=uniq, VersionStage="AWSPREVIOUS")["SecretString"] == "x"
    with pytest.raises(ClientError) as ei:
        sm.put_secret_value(SecretId=uniq, SecretString="z", ClientRequestToken=ptok)
    assert error_of(ei) == ("ResourceExistsException",
                            "You can't modify an existing version, you can only create new versions.", 400)


def test_describe_tags_update(sm, uniq):
    sm.create_secret(Name=uniq, SecretString="s", Tags=[{"Key": "a", "Value": "1"}])
    sm.tag_resource(SecretId=uniq, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    d = sm.describe_secret(SecretId=uniq)
    assert sorted((t["Key"], t["Value"]) for t in d["Tags"]) == [("a", "3"), ("b", "2")]
    assert d["RotationEnabled"] is False and "DeletedDate" not in d
    sm.untag_resource(SecretId=uniq, TagKeys=["a"])
    assert sm.describe_secret(SecretId=uniq)["Tags"] == [{"Key": "b", "Value": "2"}]
    u = sm.update_secret(SecretId=uniq, Description="new", SecretString="s2")
    assert "VersionId" in u
    d = sm.describe_secret(SecretId=uniq)
    assert d["Description"] == "new" and sm.get_secret_value(SecretId=uniq)["SecretString"] == "s2"


def test_list_pagination_and_filters(sm, aws, uniq):
    names = ["%s/n%02d" % (uniq, i) for i in range(7)]
    for i, n in enumerate(names):
        sm.create_secret(Name=n, SecretString="x", Description="even" if i % 2 == 0 else "odd",
                         Tags=[{"Key": "idx", "Value": str(i)}])
    sm.create_secret(Name="other-" + uniq.replace("/", "-"), SecretString="x")
    flt = [{"Key": "name", "Values": [uniq + "/"]}]
    seen, pages, token = [], 0, None
    while True:
        kw = {"MaxResults": 3, "Filters": flt}
        if token:
            kw["NextToken"] = token
        page = sm.list_secrets(**kw)
        pages += 1
        seen += [s["Name"] for s in page["SecretList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == names and pages == 3
    # the paginator agrees
    paged = [s["Name"] for p in sm.get_paginator("list_secrets").paginate(
        Filters=flt, PaginationConfig={"PageSize": 2}) for s in p["SecretList"]]
    assert paged == names
    even = sm.list_secrets(Filters=flt + [{"Key": "description", "Values": ["even"]}])["SecretList"]
    assert [s["Name"] for s in even] == names[0::2]
    neg = sm.list_secrets(Filters=flt + [{"Key": "description", "Values": ["!even"]}])["SecretList"]
    assert [s["Name"] for s in neg] == names[1::2]
    tagged = sm.list_secrets(Filters=[{"Key": "tag-value", "Values": ["3"]}, {"Key": "name", "Values": [uniq]}])
    assert [s["Name"] for s in tagged["SecretList"]] == [names[3]]
    assert "SecretVersionsToStages" in even[0]
    assert [s["Name"] for s in sm.list_secrets(Filters=flt + [{"Key": "description", "Values": ["EVEN"]}])[
        "SecretList"]] == names[0::2]                                   # description ignores case
    assert sm.list_secrets(Filters=[{"Key": "name", "Values": [uniq.upper()]}])["SecretList"] == []
    both = sm.list_secrets(Filters=flt + [{"Key": "all", "Values": ["ODD idx"]}])["SecretList"]
    assert [s["Name"] for s in both] == names[1::2]                      # every word, any attribute
    with pytest.raises(ClientError) as ei:
        sm.list_secrets(Filters=[{"Key": "name", "Values": ["bad*char"]}])
    assert error_of(ei)[0] == "ValidationException"
    desc = sm.list_secrets(Filters=flt, SortOrder="desc", MaxResults=2)["SecretList"]
    assert [s["Name"] for s in desc] == names[::-1][:2]
    with pytest.raises(ClientError) as ei:
        sm.list_secrets(NextToken="garbage")
    assert error_of(ei)[0] == "InvalidNextTokenException"


def test_delete_with_recovery_then_restore(sm, aws, uniq):
    sm.create_secret(Name=uniq, SecretString="keep")
    r = sm.delete_secret(SecretId=uniq, RecoveryWindowInDays=7)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=6, hours=23) < r["DeletionDate"] - now <= datetime.timedelta(days=7)
    assert "DeletedDate" in sm.describe_secret(SecretId=uniq)
    assert uniq not in [s["Name"] for s in sm.list_secrets()["SecretList"]]
    marked = ("InvalidRequestException",
              "You can't perform this operation on the secret because it was marked for deletion.", 400)
    for call in (lambda: sm.get_secret_value(SecretId=uniq),
                 lambda: sm.put_secret_value(SecretId=uniq, SecretString="x"),
                 lambda: sm.tag_resource(SecretId=uniq, Tags=[{"Key": "k", "Value": "v"}]),
                 lambda: sm.delete_secret(SecretId=uniq)):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_of(ei) == marked
    with pytest.raises(ClientError) as ei:
        sm.create_secret(Name=uniq, SecretString="again")
    assert error_of(ei)[0] == "InvalidRequestException" and "scheduled for deletion" in error_of(ei)[1]
    sm.restore_secret(SecretId=uniq)
    assert sm.get_secret_value(SecretId=uniq)["SecretString"] == "keep"


def test_default_recovery_window_ends_with_the_clock(sm, aws, uniq):
    sm.create_secret(Name=uniq, SecretString="x")
    r = sm.delete_secret(SecretId=uniq)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert r["DeletionDate"] - now > datetime.timedelta(days=29, hours=23)
    aws.control("clock", {"advance": 29 * 86400})   # business time; SigV4 still checks wall time
    assert sm.describe_secret(SecretId=uniq)["Name"] == uniq
    aws.control("clock", {"advance": 86400 + 60})
    with pytest.raises(ClientError) as ei:
        sm.describe_secret(SecretId=uniq)
    assert error_of(ei)[0] == "ResourceNotFoundException"
    sm.create_secret(Name=uniq, SecretString="new")   # the name is free again


def test_force_delete(sm, uniq):
    sm.create_secret(Name=uniq, SecretString="x")
    sm.delete_secret(SecretId=uniq, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as ei:
        sm.describe_secret(SecretId=uniq)
    assert error_of(ei) == ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.", 400)
    sm.delete_secret(SecretId=uniq, ForceDeleteWithoutRecovery=True)   # already gone: not an error
    sm.create_secret(Name=uniq, SecretString="y")                      # the name is free at once


def test_service_errors(sm, aws, uniq):
    def err(fn, **kw):
        with pytest.raises(ClientError) as ei:
            fn(**kw)
        return error_of(ei)
    assert err(sm.get_secret_value, SecretId=uniq)[0] == "ResourceNotFoundException"
    sm.create_secret(Name=uniq)   # a secret without a value
    assert err(sm.get_secret_value, SecretId=uniq) == (
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT", 400)
    assert err(sm.create_secret, Name=uniq, SecretString="x") == (
        "ResourceExistsException", "The operation failed because the secret %s already exists." % uniq, 400)
    assert err(sm.delete_secret, SecretId=uniq, RecoveryWindowInDays=3)[0] == "InvalidParameterException"
    assert err(sm.delete_secret, SecretId=uniq, RecoveryWindowInDays=7,
               ForceDeleteWithoutRecovery=True)[0] == "InvalidParameterException"
    assert err(sm.put_secret_value, SecretId=uniq, SecretString="a", SecretBinary=b"b")[0] == \
        "InvalidParameterException"
    assert err(sm.create_secret, Name="bad name!")[0] == "InvalidParameterException"
    aws.control("deny", {"action": "GetSecretValue", "secret": uniq})
    sm.put_secret_value(SecretId=uniq, SecretString="v")
    code, msg, status = err(sm.get_secret_value, SecretId=uniq)
    assert (code, status) == ("AccessDeniedException", 400)
    assert msg.startswith("User: arn:aws:iam::123456789012:user/kmsplug-test is not authorized to perform: "
                          "secretsmanager:GetSecretValue on resource: " + uniq)


def test_throttling_then_retry(aws, uniq):
    """ThrottlingException from a fault: without retries boto3 raises it, with retries it recovers."""
    aws.client().create_secret(Name=uniq, SecretString="x")
    aws.control("faults", {"match_headers": {"X-Amz-Target": r"\.GetSecretValue$"}, "status": 400,
                           "code": "ThrottlingException", "message": "Rate exceeded", "times": 1})
    with pytest.raises(ClientError) as ei:
        aws.client().get_secret_value(SecretId=uniq)
    assert error_of(ei) == ("ThrottlingException", "Rate exceeded", 400)
    aws.control("faults", {"match_headers": {"X-Amz-Target": r"\.GetSecretValue$"}, "status": 400,
                           "code": "ThrottlingException", "message": "Rate exceeded", "times": 2})
    retrying = aws.client(config=botocore.config.Config(retries={"total_max_attempts": 4, "mode": "standard"},
                                                        connect_timeout=5, read_timeout=5))
    r = retrying.get_secret_value(SecretId=uniq)
    assert r["SecretString"] == "x" and r["ResponseMetadata"]["RetryAttempts"] == 2


def test_signature_failures(aws, uniq):
    aws.client().create_secret(Name=uniq, SecretString="x")

    def err(client):
        with pytest.raises(ClientError) as ei:
            client.get_secret_value(SecretId=uniq)
        return error_of(ei)
    code, msg, st = err(aws.client(secret=SECRET_KEY + "x"))
    assert (code, st) == ("InvalidSignatureException", 400)
    assert msg.startswith("The request signature we calculated does not match the signature you provided.")
    assert SECRET_KEY not in msg
    assert err(aws.client(region="us-west-2")) == (
        "InvalidSignatureException", "Credential should be scoped to a valid region, not 'us-west-2'. ", 400)
    assert err(aws.client(key="AKIAUNKNOWN000000000")) == (
        "UnrecognizedClientException", "The security token included in the request is invalid.", 400)
    assert err(aws.client(token="not-a-session"))[0] == "UnrecognizedClientException"
    aws.control("clock", {"skew": 400})      # the client is now 400 s behind the server
    code, msg, _ = err(aws.client())
    assert code == "InvalidSignatureException" and msg.startswith("Signature expired: ")
    aws.control("clock", {"skew": -400})     # and 400 s ahead
    code, msg, _ = err(aws.client())
    assert code == "InvalidSignatureException" and msg.startswith("Signature not yet current: ")
    aws.control("clock", {"skew": 240})      # 240 s off: inside AWS's 5 minutes
    assert aws.client().get_secret_value(SecretId=uniq)["SecretString"] == "x"


def test_web_identity_session_credentials(aws, uniq):
    aws.client().create_secret(Name=uniq, SecretString="via-sts")
    sts = aws.client("sts", key="unused", secret="unused")   # AssumeRoleWithWebIdentity is unsigned
    r = sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="gw", WebIdentityToken=WEB_TOKEN,
                                          DurationSeconds=900)
    c = r["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and r["AssumedRoleUser"]["Arn"] == \
        "arn:aws:sts::123456789012:assumed-role/kmsplug-gateway/gw"
    left = c["Expiration"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=14) < left <= datetime.timedelta(minutes=15)
    temp = aws.client(key=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["SessionToken"])
    assert temp.get_secret_value(SecretId=uniq)["SecretString"] == "via-sts"
    who = aws.client("sts", key=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["SessionToken"])
    assert who.get_caller_identity()["Arn"] == r["AssumedRoleUser"]["Arn"]
    no_token = aws.client(key=c["AccessKeyId"], secret=c["SecretAccessKey"])
    with pytest.raises(ClientError) as ei:
        no_token.get_secret_value(SecretId=uniq)
    assert error_of(ei)[0] == "UnrecognizedClientException"
    aws.control("clock", {"advance": 901})
    with pytest.raises(ClientError) as ei:
        temp.get_secret_value(SecretId=uniq)
    assert error_of(ei) == ("ExpiredTokenException", "The security token included in the request is expired", 400)


def test_sts_errors(aws):
    sts = aws.client("sts", key="unused", secret="unused")
    with pytest.raises(ClientError) as ei:
        sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="gw", WebIdentityToken="forged")
    assert error_of(ei)[0] == "InvalidIdentityToken" and error_of(ei)[2] == 400
    with pytest.raises(ClientError) as ei:
        sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="gw", WebIdentityToken=WEB_TOKEN,
                                          DurationSeconds=7200)
    assert error_of(ei)[0] == "ValidationError"
    bad = aws.client("sts", secret="wrong")
    with pytest.raises(ClientError) as ei:
        bad.get_caller_identity()
    assert error_of(ei)[0] == "SignatureDoesNotMatch" and error_of(ei)[2] == 403
    assert aws.client("sts").get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/kmsplug-test"


def test_imds_credentials_through_botocore(aws, uniq):
    aws.client().create_secret(Name=uniq, SecretString="from-imds")
    fetcher = botocore.utils.InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=aws.url)
    creds = botocore.credentials.InstanceMetadataProvider(iam_role_fetcher=fetcher).load()
    assert creds is not None and creds.method == "iam-role"
    frozen = creds.get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and frozen.token
    sm = aws.client(key=frozen.access_key, secret=frozen.secret_key, token=frozen.token)
    assert sm.get_secret_value(SecretId=uniq)["SecretString"] == "from-imds"


def test_ecs_credentials_through_botocore(start_server, uniq):
    srv, _ = start_server("--ecs-auth-token", "ecs-auth-secret")
    srv.client().create_secret(Name=uniq, SecretString="from-ecs")
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.url + "/v2/credentials/task-1",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ecs-auth-secret"}
    creds = botocore.credentials.ContainerProvider(environ=env).load()
    frozen = creds.get_frozen_credentials()
    sm = srv.client(key=frozen.access_key, secret=frozen.secret_key, token=frozen.token)
    assert sm.get_secret_value(SecretId=uniq)["SecretString"] == "from-ecs"
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong"
    with pytest.raises(botocore.exceptions.CredentialRetrievalError):
        botocore.credentials.ContainerProvider(environ=env).load()


def test_static_session_credentials(start_server, uniq):
    srv, _ = start_server("--session-token", "static-session-token")
    ok = srv.client(token="static-session-token")
    ok.create_secret(Name=uniq, SecretString=base64.b64encode(b"k").decode())
    with pytest.raises(ClientError) as ei:
        srv.client().get_secret_value(SecretId=uniq)
    assert error_of(ei)[0] == "UnrecognizedClientException"
    assert KEY_ID and ok.get_secret_value(SecretId=uniq)["SecretString"] == "aw=="


def test_concurrent_writers_keep_labels_consistent(aws, uniq):
    """Eight boto3 clients writing at once: every version is kept, exactly one AWSCURRENT and one AWSPREVIOUS."""
    aws.client().create_secret(Name=uniq, SecretString="v0")

    def writer(n):
        c = aws.client()
        return [c.put_secret_value(SecretId=uniq, SecretString="w%d-%d" % (n, i))["VersionId"] for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = [v for vs in pool.map(writer, range(8)) for v in vs]
    assert len(set(ids)) == 80
    sm = aws.client()
    stages = sm.describe_secret(SecretId=uniq)["VersionIdsToStages"]
    assert sorted(map(tuple, stages.values())) == [("AWSCURRENT",), ("AWSPREVIOUS",)]
    assert all(sm.get_secret_value(SecretId=uniq, VersionId=v)["SecretString"].startswith("w") for v in ids[::9])


def test_https_with_a_verified_certificate(start_server, uniq):
    srv, _ = start_server(tls=True)
    assert srv.url.startswith("https://")
    srv.client().create_secret(Name=uniq, SecretString="over-tls")
    assert srv.client().get_secret_value(SecretId=uniq)["SecretString"] == "over-tls"
    untrusted = srv.client(verify=True)          # the system CAs do not know the test CA
    with pytest.raises(botocore.exceptions.SSLError):
        untrusted.get_secret_value(SecretId=uniq)
