"""AWS Signature Version 4 verification (the server's side of SigV4).

Rebuilds the canonical request, the string to sign and the signing key
(HMAC chain over date, region, service, "aws4_request") from what arrived
on the wire, and refuses a request the way AWS does: unknown key, wrong
region or service in the credential scope, a clock more than 5 minutes off,
a body that does not match its signature, a missing or wrong session token.

Pure functions over plain data (no locks): verify() gets the request parts
and a credential lookup, and returns the verified Identity or raises
AuthError.  Only the Authorization-header form is implemented (not
presigned query strings).
"""

import calendar
import hashlib
import hmac
import re
import time
import urllib.parse

from testserver.paths import clean_path

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 300                    # seconds AWS tolerates between the client's and its clock
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MSG_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.")
MSG_BAD_TOKEN = "The security token included in the request is invalid."
MSG_EXPIRED_TOKEN = "The security token included in the request is expired"


class AuthError(Exception):
    """A refused request: kind names the failure, the protocol picks AWS's code for it.

    kind: "missing" (no Authorization), "incomplete" (malformed header),
    "unknown_key", "bad_token", "expired_token", "signature" (mismatch,
    scope, clock, payload hash)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Identity:
    """Who signed a request."""
    __slots__ = ("access_key_id", "arn", "temporary")

    def __init__(self, access_key_id, arn, temporary):
        self.access_key_id = access_key_id
        self.arn = arn
        self.temporary = temporary


def hmac_sha256(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    """The SigV4 key: HMAC chain AWS4+secret -> date -> region -> service -> aws4_request."""
    k = hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    k = hmac_sha256(k, region)
    k = hmac_sha256(k, service)
    return hmac_sha256(k, "aws4_request")


def _uri_encode(s, safe):
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(raw_path):
    """Non-S3 services encode the (already encoded) normalized path once more."""
    return _uri_encode(clean_path(raw_path), "/~")


def canonical_query(raw_query):
    """Parameters decoded, RFC 3986-encoded again, sorted by name then value."""
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        k = urllib.parse.unquote(k.replace("+", "%20"))
        v = urllib.parse.unquote(v.replace("+", "%20"))
        pairs.append((_uri_encode(k, "-_.~"), _uri_encode(v, "-_.~")))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def _trim(value):
    return re.sub(r"\s+", " ", value.strip())


def canonical_headers(headers, signed):
    """name:value lines for the signed headers (values trimmed, repeats joined by ",")."""
    lines = []
    for name in signed:
        values = headers.get_all(name) or []
        lines.append("%s:%s\n" % (name, ",".join(_trim(v) for v in values)))
    return "".join(lines)


def parse_authorization(value):
    """(access key id, date, region, service, signed header list, signature hex) or AuthError."""
    value = value.strip()
    if not value.startswith(ALGORITHM + " "):
        algo = value.split(" ", 1)[0]
        raise AuthError("incomplete", "Unsupported AWS 'algorithm': '%s'" % algo)
    fields = {}
    for item in value[len(ALGORITHM) + 1:].split(","):
        k, eq, v = item.strip().partition("=")
        if eq:
            fields[k.strip()] = v.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise AuthError("incomplete", "Authorization header requires '%s' parameter. Authorization=%s"
                        % (missing[0], _redacted_auth(value)))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not re.fullmatch(r"[0-9]{8}", scope[1]):
        raise AuthError("incomplete", "Credential must have exactly 5 slash-delimited elements, e.g. "
                        "keyid/date/region/service/term, got '%s'" % fields["Credential"])
    signed = fields["SignedHeaders"].split(";")
    if not re.fullmatch(r"[0-9a-f]{64}", fields["Signature"]):
        raise AuthError("signature", MSG_MISMATCH)
    return scope[0], scope[1], scope[2], scope[3], signed, fields["Signature"]


def _redacted_auth(value):
    return re.sub(r"Signature=[0-9a-fA-F]*", "Signature=<redacted>", value)


def parse_amz_date(text):
    """Seconds since the epoch of an ISO 8601 basic date (20240101T000000Z), or None."""
    try:
        return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ"))
    except (ValueError, TypeError):
        return None


def amz_date(t):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def check_clock(request_time, now):
    """AWS's messages for a request signed more than MAX_SKEW away from its clock."""
    if request_time < now - MAX_SKEW:
        raise AuthError("signature", "Signature expired: %s is now earlier than %s (%s - 5 min.)"
                        % (amz_date(request_time), amz_date(now - MAX_SKEW), amz_date(now)))
    if request_time > now + MAX_SKEW:
        raise AuthError("signature", "Signature not yet current: %s is still later than %s (%s + 5 min.)"
                        % (amz_date(request_time), amz_date(now + MAX_SKEW), amz_date(now)))


def verify(req, region, service, lookup, now):
    """Verifies one request's SigV4 Authorization header; returns its Identity.

    req: object with method, raw_path, raw_query, headers (get/get_all), body.
    lookup(access_key_id, session_token, now) -> (secret, Identity) or raises
    AuthError (unknown key, bad or expired token)."""
    auth = req.headers.get("Authorization")
    if not auth:
        raise AuthError("missing", "Missing Authentication Token")
    key_id, date, scope_region, scope_service, signed, signature = parse_authorization(auth)
    if "host" not in signed:
        raise AuthError("signature", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    stamp = req.headers.get("X-Amz-Date")
    if stamp is None and req.headers.get("Date"):
        stamp = req.headers.get("Date")
        when = _parse_http_date(stamp)
    else:
        when = parse_amz_date(stamp)
    if when is None:
        raise AuthError("incomplete", "Authorization header requires existence of either a "
                        "'X-Amz-Date' or a 'Date' header. Authorization=%s" % _redacted_auth(auth))
    secret, identity = lookup(key_id, req.headers.get("X-Amz-Security-Token"), now)
    check_clock(when, now)
    if date != amz_date(when)[:8]:
        raise AuthError("signature", "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                        "version of date from HTTP: '%s' != '%s', from '%s'." % (date, amz_date(when)[:8], stamp))
    if scope_region != region:
        raise AuthError("signature", "Credential should be scoped to a valid region, not '%s'. " % scope_region)
    if scope_service != service:
        raise AuthError("signature", "Credential should be scoped to correct service: '%s'. " % service)
    payload = hashlib.sha256(req.body).hexdigest()
    declared = req.headers.get("X-Amz-Content-Sha256")
    if declared is not None and declared.strip() != payload:
        raise AuthError("signature", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    creq = "\n".join([req.method, canonical_uri(req.raw_path), canonical_query(req.raw_query),
                      canonical_headers(req.headers, signed), ";".join(signed), payload])
    sts = "\n".join([ALGORITHM, amz_date(when), "/".join([date, scope_region, scope_service, "aws4_request"]),
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    want = hmac.new(signing_key(secret, date, scope_region, scope_service), sts.encode("utf-8"),
                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        raise AuthError("signature", MSG_MISMATCH + "\n\nThe Canonical String for this request should have been\n'"
                        + creq + "'\n\nThe String-to-Sign should have been\n'" + sts + "'\n")
    return identity


def _parse_http_date(text):
    try:
        return calendar.timegm(time.strptime(text.strip(), "%a, %d %b %Y %H:%M:%S GMT"))
    except ValueError:
        return None
