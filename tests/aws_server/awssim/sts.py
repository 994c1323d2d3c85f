"""STS (query protocol, XML answers) and the two credential endpoints
instances and containers use: IMDSv2 and the ECS container credentials
endpoint.  All three hand out temporary credentials from the
CredentialStore, which the SigV4 verifier then accepts until they expire.

  POST / Action=AssumeRoleWithWebIdentity   unsigned, web identity token checked
  POST / Action=GetCallerIdentity           signed (service "sts")
  PUT  /latest/api/token                    IMDSv2 session token (TTL header 1-21600)
  GET  /latest/meta-data/iam/security-credentials/[ROLE]   token required
  GET  /v2/credentials/ID                   ECS (AWS_CONTAINER_CREDENTIALS_*_URI)

Thread safety: Sts.lock guards the web identity tokens and IMDS sessions;
the CredentialStore locks itself.
"""

import hmac
import json
import re
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

from .errors import AwsError

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IMDS_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
IMDS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
ROLE_ARN_RE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
SESSION_RE = re.compile(r"[\w+=,.@-]{2,64}")
ROTATE_BEFORE = 300               # IMDS/ECS hand out new credentials this long before expiry


def iso8601(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class StsError(AwsError):
    """Rendered as STS's <ErrorResponse>; type is Sender or Receiver."""

    def __init__(self, code, message, status=400, type_="Sender"):
        super().__init__(code, message, status)
        self.type = type_


class TextError(AwsError):
    """IMDS and ECS answer errors as plain text."""


def sts_error_xml(code, message, type_, request_id):
    return ('<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>%s</Type>\n    <Code>%s</Code>\n'
            '    <Message>%s</Message>\n  </Error>\n  <RequestId>%s</RequestId>\n</ErrorResponse>\n'
            % (STS_NS, type_, escape(code), escape(message), request_id)).encode("utf-8")


def _xml(action, result_fields, request_id):
    return ('<%sResponse xmlns="%s">\n  <%sResult>\n%s  </%sResult>\n  <ResponseMetadata>\n'
            '    <RequestId>%s</RequestId>\n  </ResponseMetadata>\n</%sResponse>\n'
            % (action, STS_NS, action, result_fields, action, request_id, action)).encode("utf-8")


class Sts:
    def __init__(self, store, clock, rng, account, role_name, issued_ttl, web_tokens, ecs_token):
        self.lock = threading.Lock()
        self.store, self.clock, self.rng, self.account = store, clock, rng, account
        self.role_name = role_name
        self.issued_ttl = issued_ttl
        self.web_tokens = set(web_tokens)
        self.ecs_token = ecs_token
        self.imds_sessions = {}          # token -> expiry
        self.instance_cred = None        # what IMDS serves until it is near expiry
        self.ecs_cred = None

    def reset(self):
        with self.lock:
            self.imds_sessions = {}
            self.instance_cred = self.ecs_cred = None

    # -- STS

    def assume_role_with_web_identity(self, params, request_id):
        role_arn = params.get("RoleArn")
        session = params.get("RoleSessionName")
        token = params.get("WebIdentityToken")
        for name, value in (("roleArn", role_arn), ("roleSessionName", session), ("webIdentityToken", token)):
            if not value:
                raise StsError("ValidationError", "1 validation error detected: Value null at '%s' failed to "
                               "satisfy constraint: Member must not be null" % name)
        m = ROLE_ARN_RE.fullmatch(role_arn)
        if m is None:
            raise StsError("ValidationError", "%s is invalid" % role_arn)
        if not SESSION_RE.fullmatch(session):
            raise StsError("ValidationError", "1 validation error detected: Value '%s' at 'roleSessionName' "
                           "failed to satisfy constraint: Member must satisfy regular expression pattern: "
                           "[\\w+=,.@-]*" % session)
        duration = params.get("DurationSeconds", "3600")
        if not duration.isdigit() or int(duration) < 900:
            raise StsError("ValidationError", "1 validation error detected: Value '%s' at 'durationSeconds' "
                           "failed to satisfy constraint: Member must have value greater than or equal to 900"
                           % duration)
        if int(duration) > 3600:
            raise StsError("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set "
                           "for this role.")
        with self.lock:
            known = any(hmac.compare_digest(token.encode(), t.encode()) for t in self.web_tokens)
        if not known:
            raise StsError("InvalidIdentityToken", "Couldn't retrieve verification key from your identity "
                           "provider,  please reference AssumeRoleWithWebIdentity documentation for requirements")
        account = role_arn.split(":")[4]
        assumed = "arn:aws:sts::%s:assumed-role/%s/%s" % (account, m.group(1), session)
        cred = self.store.issue("sts", assumed, int(duration), self.clock.now())
        role_id = "AROA" + "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))
        fields = ("    <Credentials>\n      <AccessKeyId>%s</AccessKeyId>\n      <SecretAccessKey>%s</SecretAccessKey>\n"
                  "      <SessionToken>%s</SessionToken>\n      <Expiration>%s</Expiration>\n    </Credentials>\n"
                  "    <SubjectFromWebIdentityToken>kmsplug-test-subject</SubjectFromWebIdentityToken>\n"
                  "    <AssumedRoleUser>\n      <Arn>%s</Arn>\n      <AssumedRoleId>%s:%s</AssumedRoleId>\n"
                  "    </AssumedRoleUser>\n    <Provider>kmsplug-test-oidc</Provider>\n"
                  "    <Audience>sts.amazonaws.com</Audience>\n"
                  % (cred.key_id, escape(cred.secret), escape(cred.token), iso8601(cred.expires),
                     escape(assumed), role_id, escape(session)))
        return _xml("AssumeRoleWithWebIdentity", fields, request_id)

    def get_caller_identity(self, identity, request_id):
        arn = identity.arn
        user_id = identity.access_key_id if not identity.temporary else "AROA:" + arn.rsplit("/", 1)[-1]
        fields = "    <Arn>%s</Arn>\n    <UserId>%s</UserId>\n    <Account>%s</Account>\n" % (
            escape(arn), escape(user_id), arn.split(":")[4] or self.account)
        return _xml("GetCallerIdentity", fields, request_id)

    # -- IMDSv2

    def imds(self, ex):
        """(status, text body, headers) for one /latest/ request."""
        now = self.clock.now()
        if ex.method == "PUT" and ex.raw_path == "/latest/api/token":
            if ex.headers.get("X-Forwarded-For"):
                raise TextError("Forbidden", "Forbidden", 403)
            ttl = (ex.headers.get(IMDS_TTL_HEADER) or "").strip()
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                raise TextError("BadRequest", "Bad Request", 400)
            token = "AQAEA" + "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
                                      for _ in range(51)) + "=="
            with self.lock:
                self.imds_sessions = {t: e for t, e in self.imds_sessions.items() if e > now}
                self.imds_sessions[token] = now + int(ttl)
            return 200, token, {IMDS_TTL_HEADER: ttl}
        if ex.method != "GET":
            raise TextError("MethodNotAllowed", "Method Not Allowed", 405)
        token = ex.headers.get(IMDS_TOKEN_HEADER)
        with self.lock:
            ok = token is not None and self.imds_sessions.get(token, 0) > now
        if not ok:   # IMDSv2 required: no, unknown or expired session token
            raise TextError("Unauthorized", "Unauthorized", 401)
        prefix = "/latest/meta-data/iam/security-credentials/"
        if ex.raw_path == prefix or ex.raw_path == prefix[:-1]:
            return 200, self.role_name, {}
        if ex.raw_path == prefix + self.role_name:
            cred = self._rotating("instance_cred", "imds", now)
            body = {"Code": "Success", "LastUpdated": iso8601(cred.expires - self.issued_ttl),
                    "Type": "AWS-HMAC", "Expiration": iso8601(cred.expires)}
            body.update(cred.as_dict())
            return 200, json.dumps(body, indent=2), {}
        raise TextError("NotFound", "Not Found", 404)

    def _rotating(self, slot, kind, now):
        """The credentials an endpoint serves, renewed when close to expiry (as IMDS/ECS do)."""
        with self.lock:
            cred = getattr(self, slot)
            if cred is None or cred.expires - ROTATE_BEFORE <= now:
                arn = "arn:aws:sts::%s:assumed-role/%s/%s" % (self.account, self.role_name, kind)
                cred = self.store.issue(kind, arn, self.issued_ttl, now)
                setattr(self, slot, cred)
            return cred

    # -- ECS container credentials

    def ecs(self, ex):
        if ex.method != "GET":
            raise TextError("MethodNotAllowed", "Method Not Allowed", 405)
        if self.ecs_token is not None:
            given = ex.headers.get("Authorization") or ""
            if not hmac.compare_digest(given.encode(), self.ecs_token.encode()):
                raise TextError("Unauthorized", "Unauthorized", 401)
        now = self.clock.now()
        cred = self._rotating("ecs_cred", "ecs", now)
        body = {"RoleArn": "arn:aws:iam::%s:role/%s" % (self.account, self.role_name),
                "Expiration": iso8601(cred.expires)}
        body.update(cred.as_dict())
        return 200, json.dumps(body), {}


def parse_query(body, raw_query):
    """The parameters of a query-protocol request (form body and query string)."""
    params = {}
    for src in (raw_query, body.decode("utf-8", "replace")):
        for k, v in urllib.parse.parse_qsl(src, keep_blank_values=True):
            params[k] = v
    return params
