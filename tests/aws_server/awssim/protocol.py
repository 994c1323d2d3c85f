"""AWS's side of the HTTP seam (testserver.core.Protocol): one listener, four
APIs told apart by path and headers, each answering errors in its own shape.

  POST /  X-Amz-Target: secretsmanager.<Op>   Secrets Manager, JSON 1.1, SigV4
  POST /  Action=...  (form body)             STS, query protocol, XML
  /latest/...                                 IMDSv2
  /v2/credentials/...                         ECS container credentials

The request log keeps no secret: signatures, session and metadata tokens
are hashed, SecretString/SecretBinary and WebIdentityToken values in
bodies are replaced by their hash.

Thread safety: AwsProtocol holds no mutable state of its own beyond the
seeded random generator (guarded by rng_lock); each API locks its own.
"""

import hashlib
import json
import random
import re
import threading
import uuid

from testserver.controls import bool_field, sha256_redact
from testserver.core import Protocol, Response

from .clock import Clock
from .creds import CredentialStore
from .errors import FRONT_END, AwsError
from .secrets import SecretsManager
from .sigv4 import AuthError, verify
from .sts import Sts, StsError, TextError, parse_query, sts_error_xml

JSON_TYPE = "application/x-amz-json-1.1"
SM_AUTH_CODES = {"missing": "MissingAuthenticationTokenException", "incomplete": "IncompleteSignatureException",
                 "unknown_key": "UnrecognizedClientException", "bad_token": "UnrecognizedClientException",
                 "expired_token": "ExpiredTokenException", "signature": "InvalidSignatureException"}
# STS (query protocol) answers the same failures with other codes, all 403
STS_AUTH_CODES = {"missing": "MissingAuthenticationToken", "incomplete": "IncompleteSignature",
                  "unknown_key": "InvalidClientTokenId", "bad_token": "InvalidClientTokenId",
                  "expired_token": "ExpiredToken", "signature": "SignatureDoesNotMatch"}
SECRET_BODY_FIELDS = ("SecretString", "SecretBinary")


class LockedRandom(random.Random):
    """random.Random whose draws are serialized, so a seeded run is reproducible per thread order."""

    def __init__(self, seed=None):
        self._lock = threading.Lock()
        super().__init__(seed)

    def random(self):
        with self._lock:
            return super().random()

    def getrandbits(self, k):
        with self._lock:
            return super().getrandbits(k)


class AwsProtocol(Protocol):
    name = "aws_server"
    body_too_large = ["Request entity too large"]

    def __init__(self, args):
        self.region, self.account = args.region, args.account_id
        self.clock = Clock()
        self.rng = LockedRandom(args.seed)
        self.store = CredentialStore(self.rng, self.account)
        self.store.add_static(args.access_key_id, args.secret_access_key, args.session_token)
        self.sm = SecretsManager(self.region, self.account, self.clock, self.rng)
        self.sts = Sts(self.store, self.clock, self.rng, self.account, args.instance_role,
                       args.issued_credential_ttl, args.web_identity_token, args.ecs_auth_token)

    # -- rendering

    def error(self, status, messages, headers=None, code=None):
        code = code or {404: "UnknownOperationException", 413: "RequestEntityTooLargeException",
                        500: "InternalFailure"}.get(status, "ValidationException" if status < 500
                                                     else "ServiceUnavailableException")
        key = "message" if code in FRONT_END else "Message"
        text = "; ".join(m for m in messages if m)
        body = {"__type": code, key: text} if text else {"__type": code}
        return self._json(status, body, headers)

    def internal_error(self):
        return self._json(500, {"__type": "InternalServiceError", "Message": "An error occurred on the server side."})

    def _json(self, status, body, headers=None):
        hdrs = {"x-amzn-RequestId": self.request_id()}
        hdrs.update(headers or {})
        return Response(status, headers=hdrs, raw=json.dumps(body).encode("utf-8"), content_type=JSON_TYPE)

    def request_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- the seam

    def accepts(self, ex):
        return ex.raw_path == "/" or ex.raw_path.startswith(("/latest/", "/v2/credentials/"))

    def redact(self, name, value):
        if name == "authorization":
            if value.strip().startswith("AWS4-"):
                return re.sub(r"Signature=([0-9a-fA-F]*)", lambda m: "Signature=" + sha256_redact(m.group(1)), value)
            return sha256_redact(value)
        if name in ("x-amz-security-token", "x-aws-ec2-metadata-token"):
            return sha256_redact(value)
        return value

    def redact_body(self, ex):
        """The body as the request log keeps it: secret values replaced by their hash."""
        if not ex.body:
            return ex.body
        if ex.headers.get("X-Amz-Target"):
            try:
                data = json.loads(ex.body)
            except ValueError:
                return b"<unparsable JSON body: sha256:" + hashlib.sha256(ex.body).hexdigest().encode() + b">"
            if isinstance(data, dict):
                for k in SECRET_BODY_FIELDS:
                    if isinstance(data.get(k), str):
                        data[k] = sha256_redact(data[k])
            return json.dumps(data).encode("utf-8")
        return re.sub(rb"(WebIdentityToken=)([^&]*)",
                      lambda m: m.group(1) + sha256_redact(m.group(2).decode("latin-1")).encode(), ex.body)

    def handle(self, ex):
        path = ex.raw_path
        if path.startswith("/latest/"):
            return self._text(self.sts.imds, ex)
        if path.startswith("/v2/credentials/"):
            return self._text(self.sts.ecs, ex)
        if ex.headers.get("X-Amz-Target") is not None:
            return self._secrets_manager(ex)
        if ex.method in ("GET", "POST") and "Action=" in (ex.raw_query + "&" + ex.body.decode("latin-1")):
            return self._sts(ex)
        raise AwsError("UnknownOperationException", "")

    def _text(self, fn, ex):
        try:
            status, text, headers = fn(ex)
        except TextError as e:
            status, text, headers = e.status, e.messages[0], {}
        return Response(status, headers=headers, raw=text.encode("utf-8"), content_type="text/plain")

    def _secrets_manager(self, ex):
        service, _, op = ex.headers["X-Amz-Target"].partition(".")
        if service != "secretsmanager" or ex.method != "POST":
            raise AwsError("UnknownOperationException", "")
        try:
            identity = self._verify(ex, "secretsmanager")
        except AuthError as e:
            raise AwsError(SM_AUTH_CODES[e.kind], e.message)
        try:
            data = json.loads(ex.body) if ex.body.strip() else {}
        except ValueError:
            raise AwsError("SerializationException", "the request body is not valid JSON")
        if not isinstance(data, dict):
            raise AwsError("SerializationException", "the request body must be a JSON object")
        return self._json(200, self.sm.call(op, data, identity))

    def _verify(self, ex, service):
        """SigV4 against signing_now(); credential expiry against the business clock."""
        return verify(ex, self.region, service, lambda k, t, _: self.store.lookup(k, t, self.clock.now()),
                      self.clock.signing_now())

    def _sts(self, ex):
        rid = self.request_id()
        params = parse_query(ex.body, ex.raw_query)
        action = params.get("Action")
        try:
            if action == "AssumeRoleWithWebIdentity":   # unsigned: the web identity token is the credential
                raw = self.sts.assume_role_with_web_identity(params, rid)
            elif action == "GetCallerIdentity":
                try:
                    identity = self._verify(ex, "sts")
                except AuthError as e:
                    raise StsError(STS_AUTH_CODES[e.kind], e.message, 403)
                raw = self.sts.get_caller_identity(identity, rid)
            else:
                raise StsError("InvalidAction", "Could not find operation %s for version %s"
                               % (action, params.get("Version", "NO_VERSION_SPECIFIED")))
        except StsError as e:
            return Response(e.status, headers={"x-amzn-RequestId": rid}, content_type="text/xml",
                            raw=sts_error_xml(e.code, e.messages[0], e.type, rid))
        return Response(200, headers={"x-amzn-RequestId": rid}, raw=raw, content_type="text/xml")

    # -- test controls (/__test__/<path>)

    def control(self, method, path, data):
        if method not in ("POST", "PUT"):
            return None
        if path == "clock":
            for key in ("advance", "skew"):
                v = data.get(key, 0)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise AwsError("ValidationException", '"%s" must be a number of seconds' % key)
            if "skew" in data:
                self.clock.set_skew(data["skew"])
            return {"now": self.clock.advance(data.get("advance", 0)), "signing_now": self.clock.signing_now()}
        if path == "reset":
            self.sm.reset()
            self.store.reset()
            self.sts.reset()
            self.clock.reset()
            if "seed" in data:
                self.rng.seed(data["seed"])
            return {"reset": True}
        if path == "seed":
            self.rng.seed(data.get("seed"))
            return {"seed": data.get("seed")}
        if path == "credentials":
            key, secret = data.get("access_key_id"), data.get("secret_access_key")
            if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
                raise AwsError("ValidationException", "access_key_id and secret_access_key (strings) are required")
            self.store.add_static(key, secret, data.get("session_token"))
            return {"added": key}
        if path == "credentials/expire":
            return {"expired": self.store.expire(self.clock.now(), data.get("access_key_id"))}
        if path == "deny":
            action, secret = data.get("action", ".*"), data.get("secret", "")
            try:
                re.compile(action)
                re.compile(secret)
            except (re.error, TypeError) as e:
                raise AwsError("ValidationException", '"action" and "secret" must be regular expressions: %s' % e)
            self.sm.deny(data.get("access_key_id"), action, secret)
            return {"denied": True}
        if path == "web-identity-tokens":
            tokens = data.get("tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                raise AwsError("ValidationException", '"tokens" must be a list of non-empty strings')
            with self.sts.lock:
                if bool_field(data, "replace", False):
                    self.sts.web_tokens = set()
                self.sts.web_tokens.update(tokens)
            return {"tokens": len(self.sts.web_tokens)}
        return None
