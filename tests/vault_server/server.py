#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""Vault-compatible HTTP(S) test server (Python standard library only).

Implements the parts of HashiCorp Vault's HTTP API that kmsplug's Vault
plugin and its tests use: KV v2 (and a minimal KV v1), token auth, ACL
policies, the cert and AppRole auth methods, namespaces (Enterprise style),
sys/health, sys/seal-status, sys/mounts, sys/auth, plus optional test-control
endpoints under /__test__/ for fault injection and request inspection.

Run with Debian's /usr/bin/python3.  See README.md next to this file.
"""

import argparse
import datetime
import hashlib
import http.server
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import ssl
import string
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

VAULT_VERSION = "1.15.6"
SYS_MAX_TTL = 768 * 3600          # Vault's default max_lease_ttl (32 days)
SYS_DEFAULT_TTL = 768 * 3600      # Vault's default default_lease_ttl
DEFAULT_MAX_VERSIONS = 10
IDLE_TIMEOUT = 300                # seconds a keep-alive connection may idle
LOG_BODY_MAX = 64 * 1024          # request-log body bytes kept per entry

# Error strings exactly as Vault renders them (Go multierror formatting).
ERR_DENIED = "1 error occurred:\n\t* permission denied\n\n"
ERR_INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
ERR_UNSUPPORTED_OP = "1 error occurred:\n\t* unsupported operation\n\n"
ERR_UNSUPPORTED_PATH = "1 error occurred:\n\t* unsupported path\n\n"
ERR_CAS_MISMATCH = "check-and-set parameter did not match the current version"
ERR_CAS_REQUIRED = "check-and-set parameter required for this call"

ALNUM = string.ascii_letters + string.digits


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

class VaultError(Exception):
    """An error answered as {"errors": [...]} with the given status."""

    def __init__(self, status, errors=None, headers=None):
        super().__init__(status, errors)
        self.status = status
        self.errors = [] if errors is None else list(errors)
        self.headers = headers or {}


def bad(msg):
    return VaultError(400, [msg])


class Response:
    __slots__ = ("status", "body", "headers", "raw", "content_type")

    def __init__(self, status=200, body=None, headers=None, raw=None,
                 content_type="application/json"):
        self.status = status
        self.body = body          # dict/list -> JSON; None -> empty
        self.headers = headers or {}
        self.raw = raw            # bytes, overrides body
        self.content_type = content_type


def rand_str(n):
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def new_uuid():
    return str(uuid.uuid4())


def rfc3339(ts):
    """Go's time.RFC3339Nano rendering (UTC, trailing zeros trimmed)."""
    if ts is None:
        return None
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        s += "." + ("%06d" % dt.microsecond).rstrip("0")
    return s + "Z"


def go_duration(secs):
    """Render seconds like Go's time.Duration.String() (integral seconds)."""
    secs = int(secs)
    if secs == 0:
        return "0s"
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += "%dh" % h
    if h or m:
        out += "%dm" % m
    out += "%ds" % s
    return sign + out


_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
              "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DUR_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h|d)")


def conv_error(value, field, typ):
    return bad('error converting input %s for field "%s": cannot parse %s as %s'
               % (_go_repr(value), field, json.dumps(value), typ))


def _go_repr(v):
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def parse_duration(value, field="ttl"):
    """parseutil.ParseDurationSecond: ints are seconds, strings Go durations."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise conv_error(value, field, "duration")
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        raise conv_error(value, field, "duration")
    s = value.strip()
    if s == "":
        return 0
    if re.fullmatch(r"[-+]?[0-9]+", s):
        return int(s)
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(s):
        if m.start() != pos:
            raise conv_error(value, field, "duration")
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise conv_error(value, field, "duration")
    return int(sign * total)


def to_int(value, field):
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if s == "":
            return 0
        try:
            return int(s, 10)
        except ValueError:
            pass
    raise conv_error(value, field, "int")


def to_bool(value, field):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        s = value.strip().lower()
        if s in ("1", "t", "true"):
            return True
        if s in ("0", "f", "false", ""):
            return False
    raise conv_error(value, field, "bool")


def to_strlist(value, field, lower=False):
    """framework.TypeCommaStringSlice."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, (dict, list)):
                raise conv_error(value, field, "[]string")
            items.append(v if isinstance(v, str) else _go_repr(v))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [_go_repr(value)]
    else:
        raise conv_error(value, field, "[]string")
    out = []
    for it in items:
        it = it.strip()
        if lower:
            it = it.lower()
        if it and it not in out:
            out.append(it)
    return out


def to_map(value, field):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad('error converting input %s for field "%s": expected a map, got %s'
                  % (_go_repr(value), field, type(value).__name__))
    return value


def to_strmap(value, field):
    m = to_map(value, field)
    if m is None:
        return None
    out = {}
    for k, v in m.items():
        if not isinstance(v, str):
            raise bad('error converting input for field "%s": value of key "%s" is not a string'
                      % (field, k))
        out[k] = v
    return out


def unknown_param_warning(data, known):
    extra = sorted(k for k in data if k not in known)
    if not extra:
        return None
    return "Endpoint ignored these unrecognized parameters: [%s]" % " ".join(extra)


def sanitize_policies(policies, add_default):
    """policyutil.SanitizePolicies."""
    out = []
    for p in policies:
        p = p.strip().lower()
        if p and p not in out:
            out.append(p)
    if add_default and "default" not in out:
        out.append("default")
    if "root" in out:
        return ["root"]
    return sorted(out)


def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    result = dict(target)
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def glob_match(pattern, value):
    """Vault's glob (only '*' is special)."""
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(rx, value, re.S) is not None


def go_clean_path(p):
    """Go's path.Clean as used by net/http.ServeMux (keeps a trailing slash)."""
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    out = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    np = "/" + "/".join(out)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


# --------------------------------------------------------------------------
# Minimal X.509 / DER parsing and signature verification (for cert auth)
# --------------------------------------------------------------------------

def _der_tlv(b, i):
    tag = b[i]
    i += 1
    ln = b[i]
    i += 1
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 4:
            raise ValueError("bad DER length")
        ln = int.from_bytes(b[i:i + n], "big")
        i += n
    if i + ln > len(b):
        raise ValueError("truncated DER")
    return tag, i, i + ln


def _der_children(b, start, end):
    out = []
    i = start
    while i < end:
        tag, cs, ce = _der_tlv(b, i)
        out.append((tag, cs, ce, i))
        i = ce
    return out


def _oid(content):
    vals = []
    n = 0
    for byte in content:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            vals.append(n)
            n = 0
    first = vals[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(x) for x in head + vals[1:])


def _der_time(tag, content):
    s = content.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        yy = int(s[0:2])
        year = 2000 + yy if yy < 50 else 1900 + yy
        rest = s[2:]
    else:
        year = int(s[0:4])
        rest = s[4:]
    dt = datetime.datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]),
                           int(rest[6:8]), int(rest[8:10]), tzinfo=datetime.timezone.utc)
    return dt.timestamp()


OID_CN = "2.5.4.3"
_NAME_SHORT = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
               "2.5.4.10": "O", "2.5.4.11": "OU", "1.2.840.113549.1.9.1": "emailAddress"}


class X509:
    """Just enough of a certificate for Vault's cert auth checks."""

    def __init__(self, der):
        self.der = der
        tag, s, e = _der_tlv(der, 0)
        kids = _der_children(der, s, e)
        tbs = kids[0]
        self.tbs_raw = der[tbs[3]:tbs[2]]
        alg = _der_children(der, kids[1][1], kids[1][2])
        self.sig_alg = _oid(der[alg[0][1]:alg[0][2]])
        self.signature = der[kids[2][1] + 1:kids[2][2]]
        t = _der_children(der, tbs[1], tbs[2])
        idx = 0
        if t[0][0] == 0xA0:
            idx = 1
        self.serial = int.from_bytes(der[t[idx][1]:t[idx][2]], "big", signed=True)
        self.issuer_raw = der[t[idx + 2][3]:t[idx + 2][2]]
        self.subject_raw = der[t[idx + 4][3]:t[idx + 4][2]]
        self.issuer = self._name(t[idx + 2])
        self.subject = self._name(t[idx + 4])
        val = _der_children(der, t[idx + 3][1], t[idx + 3][2])
        self.not_before = _der_time(val[0][0], der[val[0][1]:val[0][2]])
        self.not_after = _der_time(val[1][0], der[val[1][1]:val[1][2]])
        spki = t[idx + 5]
        sp = _der_children(der, spki[1], spki[2])
        palg = _der_children(der, sp[0][1], sp[0][2])
        self.key_alg = _oid(der[palg[0][1]:palg[0][2]])
        self.key_param = None
        if len(palg) > 1 and palg[1][0] == 0x06:
            self.key_param = _oid(der[palg[1][1]:palg[1][2]])
        self.pubkey = der[sp[1][1] + 1:sp[1][2]]
        self.is_ca = False
        self.ski = None
        self.aki = None
        for k in t[idx + 6:]:
            if k[0] != 0xA3:
                continue
            seq = _der_children(der, k[1], k[2])[0]
            for ext in _der_children(der, seq[1], seq[2]):
                parts = _der_children(der, ext[1], ext[2])
                eoid = _oid(der[parts[0][1]:parts[0][2]])
                val = parts[-1]
                inner = der[val[1]:val[2]]
                if eoid == "2.5.29.19":
                    bc = _der_children(inner, *_der_tlv(inner, 0)[1:])
                    if bc and bc[0][0] == 0x01:
                        self.is_ca = inner[bc[0][1]] != 0
                elif eoid == "2.5.29.14":
                    _, cs, ce = _der_tlv(inner, 0)
                    self.ski = inner[cs:ce]
                elif eoid == "2.5.29.35":
                    for c in _der_children(inner, *_der_tlv(inner, 0)[1:]):
                        if c[0] == 0x80:
                            self.aki = inner[c[1]:c[2]]

    def _name(self, node):
        der = self.der
        out = []
        for rdn in _der_children(der, node[1], node[2]):
            for atv in _der_children(der, rdn[1], rdn[2]):
                p = _der_children(der, atv[1], atv[2])
                oid = _oid(der[p[0][1]:p[0][2]])
                try:
                    val = der[p[1][1]:p[1][2]].decode("utf-8")
                except UnicodeDecodeError:
                    val = der[p[1][1]:p[1][2]].hex()
                out.append((oid, val))
        return out

    def common_name(self):
        for oid, val in self.subject:
            if oid == OID_CN:
                return val
        return ""

    def subject_str(self):
        return ",".join("%s=%s" % (_NAME_SHORT.get(o, o), v) for o, v in self.subject)

    def verify_signed_by(self, issuer):
        """True if issuer's public key verifies this certificate's signature."""
        try:
            return _verify_sig(issuer, self.sig_alg, self.tbs_raw, self.signature)
        except Exception:
            return False


def pem_to_ders(text):
    import base64
    out = []
    for m in re.finditer(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----",
                         text, re.S):
        out.append(base64.b64decode("".join(m.group(1).split())))
    return out


def hex_colon(b):
    return ":".join("%02x" % x for x in b) if b else ""


# Elliptic curves: (p, a, b, Gx, Gy, n)
_CURVES = {
    "1.2.840.10045.3.1.7": (
        0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff,
        0xffffffff00000001000000000000000000000000fffffffffffffffffffffffc,
        0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
        0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
        0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5,
        0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551),
    "1.3.132.0.34": (
        int("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
            "ffffffff0000000000000000ffffffff", 16),
        int("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
            "ffffffff0000000000000000fffffffc", 16),
        int("b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
            "c656398d8a2ed19d2a85c8edd3ec2aef", 16),
        int("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38"
            "5502f25dbf55296c3a545e3872760ab7", 16),
        int("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0"
            "0a60b1ce1d7e819d7a431d7c90ea0e5f", 16),
        int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
            "581a0db248b0a77aecec196accc52973", 16)),
}
for _k in list(_CURVES):   # drop any curve whose constants do not check out
    _p, _a, _b, _gx, _gy, _n = _CURVES[_k]
    if (_gy * _gy - (_gx ** 3 + _a * _gx + _b)) % _p != 0:
        del _CURVES[_k]

_HASHES = {
    "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512", "1.2.840.10045.4.1": "sha1",
    "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512", "1.2.840.113549.1.1.5": "sha1",
}
_DIGEST_INFO = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def _ec_add(P, Q, a, p):
    if P is None:
        return Q
    if Q is None:
        return P
    x1, y1 = P
    x2, y2 = Q
    if x1 == x2:
        if (y1 + y2) % p == 0:
            return None
        lam = (3 * x1 * x1 + a) * pow(2 * y1, -1, p) % p
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return (x3, (lam * (x1 - x3) - y1) % p)


def _ec_mul(k, P, a, p):
    R = None
    while k:
        if k & 1:
            R = _ec_add(R, P, a, p)
        P = _ec_add(P, P, a, p)
        k >>= 1
    return R


def _verify_sig(issuer, sig_alg, tbs, sig):
    hname = _HASHES.get(sig_alg)
    if hname is None:
        return False
    digest = hashlib.new(hname, tbs).digest()
    if issuer.key_alg == "1.2.840.10045.2.1":          # EC public key
        curve = _CURVES.get(issuer.key_param)
        if curve is None or not sig_alg.startswith("1.2.840.10045.4"):
            return False
        p, a, b, gx, gy, n = curve
        pk = issuer.pubkey
        size = (p.bit_length() + 7) // 8
        if pk[0] == 4:
            Q = (int.from_bytes(pk[1:1 + size], "big"), int.from_bytes(pk[1 + size:], "big"))
        elif pk[0] in (2, 3):
            x = int.from_bytes(pk[1:], "big")
            y = pow((x ** 3 + a * x + b) % p, (p + 1) // 4, p)
            if y % 2 != pk[0] % 2:
                y = p - y
            Q = (x, y)
        else:
            return False
        _, s0, e0 = _der_tlv(sig, 0)
        rs = _der_children(sig, s0, e0)
        r = int.from_bytes(sig[rs[0][1]:rs[0][2]], "big")
        s = int.from_bytes(sig[rs[1][1]:rs[1][2]], "big")
        if not (0 < r < n and 0 < s < n):
            return False
        e = int.from_bytes(digest, "big")
        if len(digest) * 8 > n.bit_length():
            e >>= len(digest) * 8 - n.bit_length()
        w = pow(s, -1, n)
        X = _ec_add(_ec_mul(e * w % n, (gx, gy), a, p), _ec_mul(r * w % n, Q, a, p), a, p)
        return X is not None and X[0] % n == r
    if issuer.key_alg == "1.2.840.113549.1.1.1":       # RSA
        _, s0, e0 = _der_tlv(issuer.pubkey, 0)
        ne = _der_children(issuer.pubkey, s0, e0)
        mod = int.from_bytes(issuer.pubkey[ne[0][1]:ne[0][2]], "big")
        exp = int.from_bytes(issuer.pubkey[ne[1][1]:ne[1][2]], "big")
        k = (mod.bit_length() + 7) // 8
        em = pow(int.from_bytes(sig, "big"), exp, mod).to_bytes(k, "big")
        t = _DIGEST_INFO[hname] + digest
        expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return em == expected
    return False


# --------------------------------------------------------------------------
# ACL policies
# --------------------------------------------------------------------------

CAPABILITIES = ("create", "read", "update", "delete", "list", "sudo", "deny",
                "patch", "subscribe")
_LEGACY_POLICY = {
    "deny": ["deny"],
    "read": ["read", "list"],
    "write": ["create", "read", "update", "delete", "list"],
    "sudo": ["create", "read", "update", "delete", "list", "sudo"],
}

DEFAULT_POLICY = '''# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its resultant ACL from all policies
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}
'''

_HCL_TOKEN = re.compile(r'''
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<num>-?[0-9]+(?:\.[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_\-.]*)
  | (?P<punct>[{}\[\]=,:])
''', re.S | re.X)


class PolicyParseError(Exception):
    pass


def _hcl_tokens(text):
    pos = 0
    toks = []
    while pos < len(text):
        m = _HCL_TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise PolicyParseError("At %d:%d: illegal char" % (line, pos - text.rfind("\n", 0, pos)))
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        val = m.group(kind)
        if kind == "str":
            val = json.loads(val)
        elif kind == "num":
            val = float(val) if "." in val else int(val)
        toks.append((kind, val))
    return toks


class _HCLParser:
    def __init__(self, toks):
        self.t = toks
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind=None, val=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (val is not None and tok[1] != val):
            raise PolicyParseError("unexpected token %r" % (tok[1],))
        self.i += 1
        return tok

    def body(self, closing):
        items = []
        while True:
            kind, val = self.peek()
            if kind is None:
                if closing:
                    raise PolicyParseError("unexpected end of input, expected '}'")
                return items
            if kind == "punct" and val == "}" and closing:
                self.i += 1
                return items
            if kind not in ("ident", "str"):
                raise PolicyParseError("unexpected token %r" % (val,))
            self.i += 1
            key = val
            labels = []
            while self.peek()[0] == "str":
                labels.append(self.take()[1])
            kind, val = self.peek()
            if kind == "punct" and val in ("=", ":"):
                self.i += 1
                items.append((key, labels, self.value()))
            elif kind == "punct" and val == "{":
                self.i += 1
                items.append((key, labels, self.body(True)))
            else:
                raise PolicyParseError("key '%s' expected start of object ('{') or assignment ('=')" % key)
            if self.peek() == ("punct", ","):
                self.i += 1

    def value(self):
        kind, val = self.peek()
        if kind in ("str", "num"):
            self.i += 1
            return val
        if kind == "ident" and val in ("true", "false"):
            self.i += 1
            return val == "true"
        if kind == "punct" and val == "[":
            self.i += 1
            out = []
            while True:
                if self.peek() == ("punct", "]"):
                    self.i += 1
                    return out
                out.append(self.value())
                if self.peek() == ("punct", ","):
                    self.i += 1
                elif self.peek() != ("punct", "]"):
                    raise PolicyParseError("expected ',' or ']' in list")
        if kind == "punct" and val == "{":
            self.i += 1
            return self.body(True)
        raise PolicyParseError("unexpected token %r" % (val,))


def _rule_caps(path, block):
    """block: dict-like list of (key, labels, value)."""
    caps = set()
    for key, _labels, value in block:
        if key == "capabilities":
            if not isinstance(value, list):
                raise PolicyParseError('path "%s": capabilities must be a list' % path)
            for c in value:
                c = str(c).lower()
                if c not in CAPABILITIES:
                    raise PolicyParseError('path "%s": invalid capability "%s"' % (path, c))
                caps.add(c)
        elif key == "policy":
            if value not in _LEGACY_POLICY:
                raise PolicyParseError('path "%s": invalid policy "%s"' % (path, value))
            caps.update(_LEGACY_POLICY[value])
    if "deny" in caps:
        caps = {"deny"}
    return caps


def parse_policy(text):
    """Returns {path_pattern: set(capabilities)}."""
    rules = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as e:
            raise PolicyParseError(str(e))
        paths = doc.get("path", {}) if isinstance(doc, dict) else {}
        if isinstance(paths, list):
            merged = {}
            for d in paths:
                merged.update(d)
            paths = merged
        for p, body in paths.items():
            if isinstance(body, list):
                body = body[0] if body else {}
            block = [(k, [], v) for k, v in body.items()]
            rules.setdefault(p, set()).update(_rule_caps(p, block))
    else:
        items = _HCLParser(_hcl_tokens(text)).body(False)
        for key, labels, value in items:
            if key != "path":
                continue
            if len(labels) != 1 or not isinstance(value, list):
                raise PolicyParseError("path: invalid path block")
            p = labels[0]
            rules.setdefault(p, set()).update(_rule_caps(p, value))
    for p in list(rules):
        if "deny" in rules[p]:
            rules[p] = {"deny"}
        if "*" in p[:-1]:
            raise PolicyParseError('path "%s": invalid use of "*"; only allowed at the end' % p)
    return rules


def _pattern_regex(p):
    glob = p.endswith("*")
    body = p[:-1] if glob else p
    rx = "/".join("[^/]+" if seg == "+" else re.escape(seg) for seg in body.split("/"))
    return re.compile("^" + rx + (".*" if glob else "") + "$", re.S)


def _pattern_priority(p):
    idxs = [i for i in (p.find("+"), p.find("*")) if i >= 0]
    first = min(idxs) if idxs else len(p)
    return (first, 0 if p.endswith("*") else 1, -p.split("/").count("+"), len(p), p)


class Policy:
    def __init__(self, name, text):
        self.name = name
        self.text = text
        self.rules = parse_policy(text)


class ACL:
    def __init__(self, policies):
        self.root = False
        merged = {}
        for pol in policies:
            if pol.name == "root":
                self.root = True
                continue
            for p, caps in pol.rules.items():
                cur = merged.setdefault(p, set())
                cur.update(caps)
                if "deny" in cur:
                    merged[p] = {"deny"}
        self.exact = {}
        self.wild = []
        for p, caps in merged.items():
            if p.endswith("*") or "+" in p.split("/"):
                self.wild.append((_pattern_priority(p), _pattern_regex(p), caps))
            else:
                self.exact[p] = caps
        self.wild.sort(key=lambda x: x[0], reverse=True)

    def capabilities(self, path):
        if self.root:
            return {"root"}
        if path in self.exact:
            return set(self.exact[path])
        for _prio, rx, caps in self.wild:
            if rx.match(path):
                return set(caps)
        return set()

    def allows(self, path, op, sudo=False):
        if self.root:
            return True
        caps = self.capabilities(path)
        if "deny" in caps or op not in caps:
            return False
        if sudo and "sudo" not in caps:
            return False
        return True


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------

class Token:
    def __init__(self, tid, ns, policies, ttl=0, explicit_max_ttl=0, max_ttl=0,
                 renewable=True, num_uses=0, display_name="token", meta=None,
                 path="auth/token/create", orphan=False, period=0, auth_mount=None,
                 parent=None):
        self.id = tid
        self.accessor = rand_str(24)
        self.ns = ns
        self.policies = policies
        self.created = time.time()
        self.ttl = ttl                      # creation TTL (0 = never expires)
        self.expire_at = self.created + ttl if ttl else None
        self.explicit_max_ttl = explicit_max_ttl
        self.max_ttl = max_ttl              # role/mount max, 0 = system max
        self.renewable = renewable
        self.num_uses = num_uses
        self.display_name = display_name
        self.meta = meta
        self.path = path
        self.orphan = orphan
        self.period = period
        self.auth_mount = auth_mount        # (ns, "cert/") for login tokens
        self.parent = parent
        self.last_renewal = None
        self.entity_id = ""

    def expired(self, now=None):
        return self.expire_at is not None and (now or time.time()) >= self.expire_at

    def remaining(self):
        if self.expire_at is None:
            return 0
        return max(0, int(round(self.expire_at - time.time())))

    def lookup_data(self):
        d = {
            "accessor": self.accessor,
            "creation_time": int(self.created),
            "creation_ttl": self.ttl,
            "display_name": self.display_name,
            "entity_id": self.entity_id,
            "expire_time": rfc3339(self.expire_at) if self.expire_at else None,
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": self.id,
            "issue_time": rfc3339(self.created),
            "meta": self.meta,
            "num_uses": self.num_uses,
            "orphan": self.orphan,
            "path": self.path,
            "policies": list(self.policies),
            "renewable": self.renewable,
            "ttl": self.remaining(),
            "type": "service",
        }
        if self.ns.path:
            d["namespace_path"] = self.ns.path
        if self.period:
            d["period"] = self.period
        if self.last_renewal:
            d["last_renewal"] = rfc3339(self.last_renewal)
            d["last_renewal_time"] = int(self.last_renewal)
        return d

    def auth_block(self, metadata=None):
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "metadata": metadata if metadata is not None else self.meta,
            "lease_duration": self.remaining() if self.expire_at else 0,
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": self.num_uses,
        }


class KVSecret:
    def __init__(self, now):
        self.versions = {}        # n -> dict(data, created, deletion_time, destroyed)
        self.current = 0
        self.oldest = 0
        self.max_versions = 0
        self.cas_required = False
        self.dva = 0
        self.custom_metadata = None
        self.created = now
        self.updated = now


class Mount:
    def __init__(self, path, mtype, version=2, description=""):
        self.path = path          # "secret/"
        self.type = mtype         # "kv", "system"
        self.version = version
        self.description = description
        self.accessor = "%s_%s" % (mtype, secrets.token_hex(4))
        self.uuid = new_uuid()
        self.options = {"version": str(version)} if mtype == "kv" else None
        self.config = {"max_versions": 0, "cas_required": False, "delete_version_after": 0}
        self.secrets = {}         # kv2: key -> KVSecret ; kv1: key -> dict
        self.default_lease_ttl = 0
        self.max_lease_ttl = 0

    def listing(self):
        return {
            "accessor": self.accessor,
            "config": {"default_lease_ttl": self.default_lease_ttl, "force_no_cache": False,
                       "max_lease_ttl": self.max_lease_ttl},
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": "v" + VAULT_VERSION + "+builtin.vault" if self.type == "system" else "v0.16.1+builtin",
            "running_sha256": "",
            "seal_wrap": self.type == "system",
            "type": self.type,
            "uuid": self.uuid,
        }


class AuthMount:
    def __init__(self, path, mtype, description=""):
        self.path = path          # "cert/"
        self.type = mtype         # token, cert, approle
        self.description = description
        self.accessor = "auth_%s_%s" % (mtype, secrets.token_hex(4))
        self.uuid = new_uuid()
        self.roles = {}           # cert: name -> dict ; approle: name -> dict
        self.secret_ids = {}      # approle: secret_id -> dict
        self.default_lease_ttl = 0
        self.max_lease_ttl = 0

    def listing(self):
        return {
            "accessor": self.accessor,
            "config": {"default_lease_ttl": self.default_lease_ttl, "force_no_cache": False,
                       "max_lease_ttl": self.max_lease_ttl, "token_type": "default-service"},
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": None,
            "plugin_version": "",
            "running_plugin_version": "v" + VAULT_VERSION + "+builtin.vault",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }


class Namespace:
    def __init__(self, name, parent, extra_mounts=()):
        self.name = name
        self.parent = parent
        self.path = (parent.path + name + "/") if parent else ""
        self.id = "root" if parent is None else rand_str(5)
        self.children = {}
        self.custom_metadata = {}
        self.mounts = {"sys/": Mount("sys/", "system", description="system endpoints used for control, policy and debugging")}
        self.mounts["secret/"] = Mount("secret/", "kv", 2, "key/value secret storage")
        for m in extra_mounts:
            p = m.strip("/") + "/"
            if p not in self.mounts:
                self.mounts[p] = Mount(p, "kv", 2)
        self.auth = {"token/": AuthMount("token/", "token", "token based credentials")}
        self.policies = {"default": Policy("default", DEFAULT_POLICY)}

    def ancestors_or_self(self):
        n = self
        while n is not None:
            yield n
            n = n.parent

    def ns_info(self):
        return {"custom_metadata": dict(self.custom_metadata), "id": self.id, "path": self.path}


class Route:
    """What a request resolved to: the handler and the ACL operation."""
    __slots__ = ("handler", "op", "unauth", "sudo", "acl_suffix_slash")

    def __init__(self, handler, op, unauth=False, sudo=False):
        self.handler = handler
        self.op = op
        self.unauth = unauth
        self.sudo = sudo


class Req:
    """A parsed /v1 request."""

    def __init__(self):
        self.method = "GET"
        self.raw_path = "/"
        self.path = ""           # after /v1/, percent-decoded
        self.raw_query = ""
        self.query = {}
        self.headers = None
        self.body = b""
        self._data = None
        self.peer_der = None
        self.is_tls = False
        self.ns = None
        self.rel = ""
        self.token = None
        self.op = "read"

    def header(self, name, default=""):
        v = self.headers.get(name)
        return default if v is None else v

    @property
    def data(self):
        """Request parameters as Vault sees them: JSON body, or the query for GET."""
        if self._data is None:
            if self.method in ("GET", "LIST", "HEAD", "DELETE"):
                self._data = {k: (v[0] if len(v) == 1 else v) for k, v in self.query.items()}
            elif (self.header("Content-Type").split(";")[0].strip().lower()
                  == "application/x-www-form-urlencoded"
                  and not self.body.lstrip()[:1] in (b"{", b"[")):
                # Vault accepts form bodies unless they look like JSON
                form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
                self._data = {k: (v[0] if len(v) == 1 else v) for k, v in form.items()}
            else:
                self._data = parse_json_body(self.body)
        return self._data


def parse_json_body(body):
    if not body or not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("failed to parse JSON input: invalid character in string literal")
    try:
        val = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            raise bad("failed to parse JSON input: unexpected EOF")
        ch = text[e.pos] if e.pos < len(text) else ""
        raise bad("failed to parse JSON input: invalid character %s %s"
                  % (json.dumps(ch).replace('"', "'"), "looking for beginning of value"
                     if "Expecting value" in e.msg else "after object key:value pair"
                     if "delimiter" in e.msg else "in input"))
    except (ValueError, RecursionError):
        raise bad("failed to parse JSON input: invalid input")
    if val is None:
        return {}
    if not isinstance(val, dict):
        typ = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}.get(type(val), "value")
        raise bad("failed to parse JSON input: json: cannot unmarshal %s into Go value of type map[string]interface {}" % typ)
    return val


def envelope(data=None, warnings=None, auth=None, mount_type=None, extra=None):
    body = {
        "request_id": new_uuid(),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": warnings or None,
        "auth": auth,
    }
    if mount_type is not None:
        body["mount_type"] = mount_type
    if extra:
        for k, v in extra.items():
            body.setdefault(k, v)
    return body


def ok(data=None, warnings=None, auth=None, mount_type=None, extra=None, status=200):
    return Response(status, envelope(data, warnings, auth, mount_type, extra))


def no_content(warnings=None, mount_type=None):
    """204, or 200 with the warnings when there are any (as Vault does)."""
    if warnings:
        return ok(None, warnings, mount_type=mount_type)
    return Response(204)


def method_op(req):
    m = req.method
    if m in ("GET", "HEAD"):
        lv = req.query.get("list", [""])[0].strip().lower()
        if m == "GET" and lv in ("1", "t", "true"):
            return "list"
        return "read"
    if m == "LIST":
        return "list"
    if m in ("POST", "PUT"):
        return "update"
    if m == "DELETE":
        return "delete"
    if m == "PATCH":
        return "patch"
    return None


def unsupported_op():
    raise VaultError(405, [ERR_UNSUPPORTED_OP])


def unsupported_path():
    raise VaultError(404, [ERR_UNSUPPORTED_PATH])


def not_found():
    raise VaultError(404, [])


# The K/V v2 backend's catch-all path (pathInvalid in vault-plugin-secrets-kv):
# clients such as the Vault CLI and hvac users tell a v1 from a v2 mount by it.
KV2_ROOT_WARNING = "Non-listing operations on the root of a K/V v2 mount are not supported."
KV2_INVALID_WARNING = ("Invalid path for a versioned K/V secrets engine. See the API docs for the "
                       "appropriate API endpoints to use. If using the Vault CLI, use 'vault kv %s' "
                       "for this operation.")
_KV_SUBCOMMAND = {"update": "put", "create": "put", "patch": "patch", "read": "get",
                  "list": "list", "delete": "delete"}


def kv2_invalid_path(sub, op):
    """404 with the full envelope and Vault's warning.  The backend renders this
    body itself (logical.RespondWithStatusCode), so mount_type stays empty."""
    if sub in ("metadata", "data", "delete", "undelete", "destroy"):
        warning = KV2_ROOT_WARNING
    else:
        warning = KV2_INVALID_WARNING % _KV_SUBCOMMAND.get(op, "")
    return Response(404, envelope(None, [warning], mount_type=""))


class Vault:
    """All Vault state plus request handling.  One lock guards everything."""

    def __init__(self, root_token="root", extra_mounts=(), namespaces=()):
        self.lock = threading.RLock()
        self.extra_mounts = list(extra_mounts)
        self.root_ns = Namespace("", None, self.extra_mounts)
        self.tokens = {}
        self.by_accessor = {}
        self.root_token = Token(root_token, self.root_ns, ["root"], ttl=0, renewable=False,
                                display_name="root", path="auth/token/root", orphan=True)
        self._add_token(self.root_token)
        for ns in namespaces:
            self.create_namespace_path(ns)
        self.sealed = False
        self.standby = None          # (redirect_to, status)
        self.cluster_id = new_uuid()
        self.cluster_name = "vault-cluster-" + secrets.token_hex(4)

    # ---------------- namespaces ----------------

    def create_namespace_path(self, path, base=None):
        ns = base or self.root_ns
        created = None
        for seg in [s for s in path.strip("/").split("/") if s]:
            if seg not in ns.children:
                ns.children[seg] = Namespace(seg, ns, self.extra_mounts)
                created = ns.children[seg]
            ns = ns.children[seg]
        return ns, created

    def resolve_ns(self, header, path):
        segs = [s for s in header.strip().strip("/").split("/") if s]
        segs += path.split("/")
        ns = self.root_ns
        i = 0
        while i < len(segs) - 1 and segs[i] in ns.children:
            ns = ns.children[segs[i]]
            i += 1
        # a namespace name that is the very last segment is still a namespace
        if i == len(segs) - 1 and segs[i] in ns.children and segs[i]:
            ns = ns.children[segs[i]]
            i += 1
        return ns, "/".join(segs[i:])

    # ---------------- tokens ----------------

    def _add_token(self, t):
        self.tokens[t.id] = t
        self.by_accessor[t.accessor] = t
        return t

    def new_token_id(self, ns):
        tid = "hvs." + rand_str(24)
        if ns.path:
            tid += "." + ns.id
        return tid

    def revoke_token(self, t):
        if self.tokens.get(t.id) is not t:
            return
        del self.tokens[t.id]
        self.by_accessor.pop(t.accessor, None)
        for child in [c for c in self.tokens.values() if c.parent == t.id]:
            self.revoke_token(child)

    def token_from_request(self, req):
        tok = req.header("X-Vault-Token").strip()
        if not tok:
            auth = req.header("Authorization").strip()
            if auth[:7].lower() == "bearer ":
                tok = auth[7:].strip()
        return tok

    def authenticate(self, req):
        tid = self.token_from_request(req)
        if not tid:
            raise VaultError(403, [ERR_DENIED])
        t = self.tokens.get(tid)
        if t is None or t.expired():
            raise VaultError(403, [ERR_INVALID_TOKEN])
        if t.ns not in list(req.ns.ancestors_or_self()):
            raise VaultError(403, [ERR_INVALID_TOKEN])
        return t

    def acl_for(self, t):
        pols = []
        for name in t.policies:
            if name == "root":
                pols.append(Policy.__new__(Policy))
                pols[-1].name, pols[-1].rules = "root", {}
            elif name in t.ns.policies:
                pols.append(t.ns.policies[name])
        return ACL(pols)

    @staticmethod
    def acl_path(t, ns, rel, op):
        p = ns.path[len(t.ns.path):] + rel
        if op == "list" and not p.endswith("/"):
            p += "/"
        return p

    # ---------------- main entry ----------------

    def handle(self, req):
        if req.method == "PATCH":
            ctype = req.header("Content-Type").split(";")[0].strip().lower()
            if not ctype:
                raise bad("mime: no media type")
            if ctype != "application/merge-patch+json":
                raise VaultError(415, ["PATCH requires Content-Type of application/merge-patch+json, provided %s" % ctype])
        with self.lock:
            req.ns, req.rel = self.resolve_ns(req.header("X-Vault-Namespace"), req.path)
            op = method_op(req)
            if op is None:
                raise VaultError(405, [])
            req.op = op
            route = self.route(req)
            if route is not None and route.unauth:
                return route.handler()
            t = self.authenticate(req)
            req.token = t
            acl_op = route.op if route else op
            ap = self.acl_path(t, req.ns, req.rel, acl_op)
            if not self.acl_for(t).allows(ap, acl_op, route.sudo if route else False):
                raise VaultError(403, [ERR_DENIED])
            last_use = False
            if t.num_uses > 0:
                t.num_uses -= 1
                last_use = t.num_uses == 0
            try:
                if route is None:
                    raise VaultError(404, ['no handler for route "%s". route entry not found.' % req.rel])
                return route.handler()
            finally:
                if last_use:
                    self.revoke_token(t)

    def route(self, req):
        ns, rel, op = req.ns, req.rel, req.op
        if rel == "sys" or rel.startswith("sys/"):
            return self.route_sys(req, rel[4:], op)
        if rel.startswith("auth/"):
            rest = rel[5:]
            for mp in sorted(ns.auth, key=len, reverse=True):
                if rest.startswith(mp) or rest == mp[:-1]:
                    am = ns.auth[mp]
                    sub = rest[len(mp):]
                    if am.type == "token":
                        return self.route_token(req, sub, op)
                    if am.type == "cert":
                        return self.route_cert(req, am, sub, op)
                    if am.type == "approle":
                        return self.route_approle(req, am, sub, op)
            return None
        for mp in sorted(ns.mounts, key=len, reverse=True):
            if rel.startswith(mp) or rel == mp[:-1]:
                m = ns.mounts[mp]
                sub = rel[len(mp):]
                if m.type == "kv" and m.version == 2:
                    return self.route_kv2(req, m, sub, op)
                if m.type == "kv":
                    return self.route_kv1(req, m, sub, op)
        return None

    # ---------------- KV v2 ----------------

    def route_kv2(self, req, m, sub, op):
        seg, _, key = sub.partition("/")
        R = Route
        if op != "list" and "/" not in sub and sub != "config":
            # "data" without its slash, a v1-style "foo", the mount root: Vault's
            # paths are "data/.*" etc., so these reach the catch-all.  (A LIST
            # path gets its trailing slash first, so "metadata" lists.)
            return R(lambda: kv2_invalid_path(sub, op), op)
        if sub == "config":
            if op == "read":
                return R(lambda: self.kv2_config_read(m), op)
            if op == "update":
                return R(lambda: self.kv2_config_write(m, req), op)
            return R(unsupported_op, op)
        if seg == "data":
            if op == "read":
                return R(lambda: self.kv2_read(m, key, req), op)
            if op == "update":
                return R(lambda: self.kv2_write(m, key, req), "update" if key in m.secrets else "create")
            if op == "patch":
                return R(lambda: self.kv2_patch(m, key, req), op)
            if op == "delete":
                return R(lambda: self.kv2_delete_latest(m, key), op)
            return R(unsupported_op, op)
        if seg == "metadata":
            if op == "read":
                return R(lambda: self.kv2_meta_read(m, key), op)
            if op == "list":
                return R(lambda: self.kv2_list(m, key), op)
            if op == "update":
                return R(lambda: self.kv2_meta_write(m, key, req), "update" if key in m.secrets else "create")
            if op == "patch":
                return R(lambda: self.kv2_meta_patch(m, key, req), op)
            if op == "delete":
                return R(lambda: self.kv2_meta_delete(m, key), op)
            return R(unsupported_op, op)
        if seg in ("delete", "undelete", "destroy"):
            if op == "update":
                return R(lambda: self.kv2_versions_op(m, seg, key, req), op)
            return R(unsupported_op, op)
        if seg == "subkeys":
            if op == "read":
                return R(lambda: self.kv2_subkeys(m, key, req), op)
            return R(unsupported_op, op)
        return R(lambda: kv2_invalid_path(sub, op), op)

    @staticmethod
    def _deleted(v, now=None):
        return v["deletion"] is not None and v["deletion"] <= (now or time.time())

    @staticmethod
    def _vmeta(s, n):
        v = s.versions[n]
        return {
            "created_time": rfc3339(v["created"]),
            "custom_metadata": dict(s.custom_metadata) if s.custom_metadata else None,
            "deletion_time": rfc3339(v["deletion"]) if v["deletion"] is not None else "",
            "destroyed": v["destroyed"],
            "version": n,
        }

    @staticmethod
    def _max_versions(m, s):
        """The larger of the secret's and the mount's max_versions, else 10 (as Vault)."""
        mine = s.max_versions if s is not None else 0
        return max(mine, m.config["max_versions"]) or DEFAULT_MAX_VERSIONS

    @staticmethod
    def _dva(m, s):
        cfg = m.config["delete_version_after"]
        mine = s.dva if s is not None else 0
        if mine < 0:
            return 0
        if mine > 0:
            return min(mine, cfg) if cfg > 0 else mine
        return cfg if cfg > 0 else 0

    def _version_param(self, req):
        raw = req.data.get("version", 0)
        v = to_int(raw, "version")
        if v < 0:
            raise bad("version must be greater than or equal to 0")
        return v

    def kv2_read(self, m, key, req):
        ver = self._version_param(req)
        s = m.secrets.get(key)
        if s is None or s.current == 0:
            not_found()
        n = ver or s.current
        if n not in s.versions:
            not_found()
        v = s.versions[n]
        md = self._vmeta(s, n)
        if v["destroyed"] or self._deleted(v):
            return Response(404, envelope({"data": None, "metadata": md}, mount_type="kv"))
        return ok({"data": json.loads(json.dumps(v["data"])), "metadata": md}, mount_type="kv")

    def _check_cas(self, m, s, opts):
        cas_required = m.config["cas_required"] or (s is not None and s.cas_required)
        if "cas" in opts and opts["cas"] is not None:
            cas = to_int(opts["cas"], "cas")
            cur = s.current if s is not None else 0
            if cas != cur:
                raise bad(ERR_CAS_MISMATCH)
        elif cas_required:
            raise bad(ERR_CAS_REQUIRED)

    def _add_version(self, m, key, s, data):
        now = time.time()
        if s is None:
            s = KVSecret(now)
            m.secrets[key] = s
        n = s.current + 1
        dva = self._dva(m, s)
        s.versions[n] = {"data": data, "created": now,
                         "deletion": now + dva if dva else None, "destroyed": False}
        s.current = n
        s.updated = now
        # KeyMetadata.AddVersion: the window [oldest, current] slides on every
        # write once it spans max_versions, so oldest_version is 1 after the
        # second write with max_versions=2 (not only once a version is pruned).
        maxv = self._max_versions(m, s)
        if s.current - s.oldest >= maxv:
            drop = s.current - maxv
            for old in [v for v in s.versions if v <= drop]:
                del s.versions[old]
            s.oldest = drop + 1
        return ok(self._vmeta(s, n), mount_type="kv")

    def kv2_write(self, m, key, req):
        d = req.data
        if key == "":
            raise bad("missing path")
        warn = unknown_param_warning(d, ("data", "options", "version"))
        if d.get("data") is None:
            raise bad("no data provided")
        data = to_map(d["data"], "data")
        opts = to_map(d.get("options"), "options") or {}
        s = m.secrets.get(key)
        self._check_cas(m, s, opts)
        resp = self._add_version(m, key, s, json.loads(json.dumps(data)))
        if warn:
            resp.body["warnings"] = [warn]
        return resp

    def kv2_patch(self, m, key, req):
        d = req.data
        if d.get("data") is None:
            raise bad("no data provided")
        patch = to_map(d["data"], "data")
        opts = to_map(d.get("options"), "options") or {}
        s = m.secrets.get(key)
        if s is None or s.current == 0 or s.current not in s.versions:
            not_found()
        cur = s.versions[s.current]
        if cur["destroyed"] or self._deleted(cur):
            not_found()
        self._check_cas(m, s, opts)
        return self._add_version(m, key, s, json_merge_patch(cur["data"], patch))

    def kv2_delete_latest(self, m, key):
        s = m.secrets.get(key)
        if s is not None and s.current in s.versions:
            v = s.versions[s.current]
            if not v["destroyed"] and not self._deleted(v):
                v["deletion"] = time.time()
        return Response(204)

    def kv2_versions_op(self, m, opname, key, req):
        d = req.data
        raw = d.get("versions")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        elif isinstance(raw, str):
            raw = [x for x in raw.split(",") if x.strip()]
        if raw is not None and not isinstance(raw, list):
            raise conv_error(raw, "versions", "[]int")
        versions = [to_int(x, "versions") for x in (raw or [])]
        if not versions:
            raise bad("no version number provided")
        s = m.secrets.get(key)
        if s is None:
            return Response(204)
        now = time.time()
        for n in versions:
            v = s.versions.get(n)
            if v is None:
                continue
            if opname == "delete":
                if not v["destroyed"] and not self._deleted(v, now):
                    v["deletion"] = now
            elif opname == "undelete":
                if not v["destroyed"]:
                    v["deletion"] = None
            else:
                v["destroyed"] = True
                v["data"] = None
        s.updated = now
        return Response(204)

    def kv2_meta_read(self, m, key):
        s = m.secrets.get(key)
        if s is None:
            not_found()
        versions = {}
        for n in sorted(s.versions):
            v = s.versions[n]
            versions[str(n)] = {
                "created_time": rfc3339(v["created"]),
                "deletion_time": rfc3339(v["deletion"]) if v["deletion"] is not None else "",
                "destroyed": v["destroyed"],
            }
        return ok({
            "cas_required": s.cas_required,
            "created_time": rfc3339(s.created),
            "current_version": s.current,
            "custom_metadata": dict(s.custom_metadata) if s.custom_metadata else None,
            "delete_version_after": go_duration(s.dva),
            "max_versions": s.max_versions,
            "oldest_version": s.oldest,
            "updated_time": rfc3339(s.updated),
            "versions": versions,
        }, mount_type="kv")

    @staticmethod
    def _check_custom_metadata(cm):
        errs = []
        if len(cm) > 64:
            errs.append("payload must contain at most 64 keys, provided: %d" % len(cm))
        for k, v in cm.items():
            if len(k) > 128:
                errs.append("length of key %q is %d but max is 128" % (k, len(k)))
            if len(v) > 512:
                errs.append("length of value for key %q is %d but max is 512" % (k, len(v)))
        if errs:
            raise bad("custom_metadata validation failed: %d error%s occurred:\n%s\n\n" % (
                len(errs), "" if len(errs) == 1 else "s", "\n".join("\t* " + e for e in errs)))

    def _apply_meta(self, s, d, patch=False):
        if "max_versions" in d:
            mv = to_int(d["max_versions"], "max_versions")
            if mv < 0:
                raise bad("max_versions must be greater than or equal to 0")
            s.max_versions = mv
        if "cas_required" in d:
            s.cas_required = to_bool(d["cas_required"], "cas_required")
        if "delete_version_after" in d:
            s.dva = parse_duration(d["delete_version_after"], "delete_version_after")
        if "custom_metadata" in d:
            if patch:
                cm = to_map(d["custom_metadata"], "custom_metadata") or {}
                merged = json_merge_patch(s.custom_metadata or {}, cm)
                cm = to_strmap(merged, "custom_metadata")
            else:
                cm = to_strmap(d["custom_metadata"], "custom_metadata") or {}
            self._check_custom_metadata(cm)
            s.custom_metadata = cm or None

    META_FIELDS = ("max_versions", "cas_required", "delete_version_after", "custom_metadata")

    def kv2_meta_write(self, m, key, req):
        d = req.data
        if key == "":
            raise bad("missing path")
        warn = unknown_param_warning(d, self.META_FIELDS)
        s = m.secrets.get(key)
        fresh = s is None
        if fresh:
            s = KVSecret(time.time())
        self._apply_meta(s, d)
        s.updated = time.time()
        if fresh:
            m.secrets[key] = s
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_meta_patch(self, m, key, req):
        d = req.data
        s = m.secrets.get(key)
        if s is None:
            not_found()
        warn = unknown_param_warning(d, self.META_FIELDS)
        self._apply_meta(s, d, patch=True)
        s.updated = time.time()
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_meta_delete(self, m, key):
        m.secrets.pop(key, None)
        return Response(204)

    @staticmethod
    def _list_keys(store, prefix):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        keys = set()
        for k in store:
            if not k.startswith(prefix) or k == prefix:
                continue
            rest = k[len(prefix):]
            i = rest.find("/")
            keys.add(rest if i < 0 else rest[:i + 1])
        return sorted(keys)

    def kv2_list(self, m, key):
        keys = self._list_keys(m.secrets, key)
        if not keys:
            not_found()
        return ok({"keys": keys}, mount_type="kv")

    def kv2_config_read(self, m):
        return ok({"cas_required": m.config["cas_required"],
                   "delete_version_after": go_duration(m.config["delete_version_after"]),
                   "max_versions": m.config["max_versions"]}, mount_type="kv")

    def kv2_config_write(self, m, req):
        d = req.data
        warn = unknown_param_warning(d, ("max_versions", "cas_required", "delete_version_after"))
        if "max_versions" in d:
            m.config["max_versions"] = to_int(d["max_versions"], "max_versions")
        if "cas_required" in d:
            m.config["cas_required"] = to_bool(d["cas_required"], "cas_required")
        if "delete_version_after" in d:
            m.config["delete_version_after"] = parse_duration(d["delete_version_after"], "delete_version_after")
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_subkeys(self, m, key, req):
        ver = self._version_param(req)
        depth = to_int(req.data.get("depth", 0), "depth")
        s = m.secrets.get(key)
        if s is None or s.current == 0:
            not_found()
        n = ver or s.current
        if n not in s.versions:
            not_found()
        v = s.versions[n]
        md = self._vmeta(s, n)
        if v["destroyed"] or self._deleted(v):
            return Response(404, envelope({"subkeys": None, "metadata": md}, mount_type="kv"))

        def walk(obj, level):
            out = {}
            for k, val in obj.items():
                if isinstance(val, dict) and (depth == 0 or level < depth):
                    out[k] = walk(val, level + 1)
                else:
                    out[k] = None
            return out
        return ok({"subkeys": walk(v["data"], 1), "metadata": md}, mount_type="kv")

    # ---------------- KV v1 (minimal) ----------------

    def route_kv1(self, req, m, key, op):
        def read():
            if key not in m.secrets:
                not_found()
            body = envelope(json.loads(json.dumps(m.secrets[key])), mount_type="kv")
            body["lease_duration"] = SYS_DEFAULT_TTL
            return Response(200, body)

        def write():
            if not key:
                raise bad("missing path")
            m.secrets[key] = json.loads(json.dumps(req.data))
            return Response(204)

        def delete():
            m.secrets.pop(key, None)
            return Response(204)

        def lst():
            keys = self._list_keys(m.secrets, key)
            if not keys:
                not_found()
            return ok({"keys": keys}, mount_type="kv")
        handlers = {"read": read, "update": write, "delete": delete, "list": lst}
        if op == "update":
            return Route(write, "update" if key in m.secrets else "create")
        return Route(handlers.get(op, unsupported_op), op)

    # ---------------- sys ----------------

    def route_sys(self, req, sub, op):
        R = Route
        ns = req.ns
        if sub == "health":
            return R(lambda: self.sys_health(req), op, unauth=True)
        if sub == "seal-status":
            return R(lambda: Response(200, self.seal_status()), op, unauth=True)
        if sub == "init":
            return R(lambda: Response(200, {"initialized": True}) if op == "read" else unsupported_op(),
                     op, unauth=True)
        if sub == "leader":
            return R(lambda: Response(200, {
                "ha_enabled": False, "is_self": False, "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "", "leader_cluster_address": "", "performance_standby": False,
                "performance_standby_last_remote_wal": 0}), op, unauth=True)
        if sub.startswith("internal/ui/mounts/") or sub == "internal/ui/mounts":
            return R(lambda: self.sys_ui_mount(req, sub[len("internal/ui/mounts/"):]), op, unauth=True)
        if sub in ("mounts", "mounts/"):
            return R(lambda: self.sys_mounts_list(ns) if op == "read" else unsupported_op(), op)
        if sub.startswith("mounts/"):
            p = sub[len("mounts/"):]
            if p.endswith("/tune"):
                mp = p[:-len("/tune")].strip("/") + "/"
                return R(lambda: self.sys_mount_tune(ns, mp, req, op), op)
            mp = p.strip("/") + "/"
            return R(lambda: self.sys_mount(ns, mp, req, op), op)
        if sub in ("auth", "auth/"):
            return R(lambda: self.sys_auth_list(ns) if op == "read" else unsupported_op(), op)
        if sub.startswith("auth/"):
            p = sub[len("auth/"):]
            if p.endswith("/tune"):
                mp = p[:-len("/tune")].strip("/") + "/"
                return R(lambda: self.sys_auth_tune(ns, mp, req, op), op, sudo=True)
            mp = p.strip("/") + "/"
            return R(lambda: self.sys_auth(ns, mp, req, op), op, sudo=op != "read")
        if sub in ("policies/acl", "policies/acl/"):
            return R(lambda: self.sys_policy_list(ns, legacy=False) if op == "list" else unsupported_op(), op)
        if sub.startswith("policies/acl/"):
            name = sub[len("policies/acl/"):]
            return R(lambda: self.sys_policy(ns, name, req, op, legacy=False), op)
        if sub in ("policy", "policy/"):
            return R(lambda: self.sys_policy_list(ns, legacy=True) if op in ("read", "list") else unsupported_op(), op)
        if sub.startswith("policy/"):
            name = sub[len("policy/"):]
            return R(lambda: self.sys_policy(ns, name, req, op, legacy=True), op)
        if sub in ("namespaces", "namespaces/"):
            return R(lambda: self.sys_ns_list(ns) if op == "list" else unsupported_op(), op)
        if sub.startswith("namespaces/"):
            p = sub[len("namespaces/"):].strip("/")
            return R(lambda: self.sys_namespace(ns, p, req, op), op)
        if sub == "capabilities-self":
            return R(lambda: self.sys_capabilities(req, self_=True) if op == "update" else unsupported_op(), op)
        if sub in ("capabilities", "capabilities-accessor"):
            return R(lambda: self.sys_capabilities(req, self_=False, by_accessor=sub.endswith("accessor"))
                     if op == "update" else unsupported_op(), op, sudo=True)
        return R(unsupported_path, op)

    def sys_health(self, req):
        def code(name, default):
            v = req.query.get(name, [""])[0]
            return int(v) if v.isdigit() else default

        def flag(name):
            v = req.query.get(name, [""])[0].lower()
            return v in ("", "1", "t", "true") if name in req.query else False
        standby = self.standby is not None
        body = {
            "initialized": True,
            "sealed": self.sealed,
            "standby": standby or self.sealed,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VAULT_VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        }
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        if self.sealed:
            status = code("sealedcode", 503)
        elif standby:
            status = 200 if flag("standbyok") else code("standbycode", 429)
        else:
            status = code("activecode", 200)
        return Response(status, body)

    def seal_status(self):
        body = {"type": "shamir", "initialized": True, "sealed": self.sealed, "t": 1, "n": 1,
                "progress": 0, "nonce": "", "version": VAULT_VERSION,
                "build_date": "2024-02-28T17:07:34Z", "migration": False,
                "recovery_seal": False, "storage_type": "inmem"}
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        return body

    def _find_mount(self, ns, path):
        for mp in sorted(ns.mounts, key=len, reverse=True):
            if path.startswith(mp) or path == mp[:-1]:
                return ns.mounts[mp]
        return None

    def sys_ui_mount(self, req, path):
        tid = self.token_from_request(req)
        t = self.tokens.get(tid) if tid else None
        if t is None or t.expired() or t.ns not in list(req.ns.ancestors_or_self()):
            raise VaultError(403, [ERR_DENIED])
        m = self._find_mount(req.ns, path)
        acl = self.acl_for(t)
        if m is not None:
            base = req.ns.path[len(t.ns.path):] + m.path
            allowed = acl.root or any(
                caps and "deny" not in caps for caps in
                [acl.capabilities(base)] + [acl.exact[p] for p in acl.exact if p.startswith(base)] +
                [c for (_pr, rx, c) in acl.wild if rx.match(base) or _pr[4].startswith(base)])
            if allowed:
                data = m.listing()
                data["path"] = m.path
                return ok(data, mount_type="system")
        raise VaultError(403, ["preflight capability check returned 403, please ensure client's policies grant access to path \"%s\"" % (path if path.endswith("/") else path + "/")])

    def sys_mounts_list(self, ns):
        data = {p: m.listing() for p, m in sorted(ns.mounts.items())}
        return ok(data, mount_type="system", extra=data)

    def sys_mount(self, ns, mp, req, op):
        if op == "read":
            m = ns.mounts.get(mp)
            if m is None:
                raise bad("No secret engine mount at %s" % mp)
            return ok(m.listing(), mount_type="system")
        if op == "update":
            d = req.data
            mtype = d.get("type", "")
            if not isinstance(mtype, str) or not mtype:
                raise bad("backend type must be specified as a string")
            opts = to_map(d.get("options"), "options") or {}
            version = 1
            if mtype in ("kv-v2",):
                version = 2
            elif mtype == "kv":
                version = 2 if str(opts.get("version", "1")) == "2" else 1
            else:
                raise bad("plugin not found in the catalog: %s" % mtype)
            if mp in ("sys/", "auth/", "cubbyhole/", "identity/") or mp.startswith("sys/") or mp.startswith("auth/"):
                raise bad("cannot mount '%s' of type '%s' as it is a reserved path" % (mp, mtype))
            for existing in ns.mounts:
                if mp.startswith(existing) or existing.startswith(mp):
                    raise bad("path is already in use at %s" % existing)
            m = Mount(mp, "kv", version, str(d.get("description", "") or ""))
            cfg = to_map(d.get("config"), "config") or {}
            m.default_lease_ttl = parse_duration(cfg.get("default_lease_ttl", 0), "default_lease_ttl")
            m.max_lease_ttl = parse_duration(cfg.get("max_lease_ttl", 0), "max_lease_ttl")
            ns.mounts[mp] = m
            return Response(204)
        if op == "delete":
            if mp == "sys/":
                raise bad("cannot unmount \"sys/\"")
            ns.mounts.pop(mp, None)
            return Response(204)
        unsupported_op()

    def sys_mount_tune(self, ns, mp, req, op):
        m = ns.mounts.get(mp)
        if m is None:
            raise bad('cannot fetch sysview for path "%s"' % mp)
        if op == "read":
            data = {"default_lease_ttl": m.default_lease_ttl or SYS_DEFAULT_TTL,
                    "max_lease_ttl": m.max_lease_ttl or SYS_MAX_TTL,
                    "force_no_cache": False, "description": m.description}
            if m.options:
                data["options"] = dict(m.options)
            return ok(data, mount_type="system")
        if op == "update":
            d = req.data
            opts = to_map(d.get("options"), "options") or {}
            if m.type == "kv" and str(opts.get("version", "")) == "2" and m.version == 1:
                m.version = 2
                m.options = {"version": "2"}
                m.secrets = {}
            if "default_lease_ttl" in d:
                m.default_lease_ttl = parse_duration(d["default_lease_ttl"], "default_lease_ttl")
            if "max_lease_ttl" in d:
                m.max_lease_ttl = parse_duration(d["max_lease_ttl"], "max_lease_ttl")
            if "description" in d:
                m.description = str(d["description"])
            return Response(204)
        unsupported_op()

    def sys_auth_list(self, ns):
        data = {p: a.listing() for p, a in sorted(ns.auth.items())}
        return ok(data, mount_type="system", extra=data)

    def sys_auth(self, ns, mp, req, op):
        if op == "read":
            a = ns.auth.get(mp)
            if a is None:
                raise bad("No auth engine at %s" % mp)
            return ok(a.listing(), mount_type="system")
        if op == "update":
            d = req.data
            mtype = d.get("type", "")
            if not isinstance(mtype, str) or not mtype:
                raise bad("backend type must be specified as a string")
            if mtype not in ("cert", "approle"):
                if mtype == "token":
                    raise bad("token credential backend cannot be instantiated")
                raise bad("plugin not found in the catalog: %s" % mtype)
            for existing in ns.auth:
                if mp.startswith(existing) or existing.startswith(mp):
                    raise bad("path is already in use at %s" % existing)
            a = AuthMount(mp, mtype, str(d.get("description", "") or ""))
            cfg = to_map(d.get("config"), "config") or {}
            a.default_lease_ttl = parse_duration(cfg.get("default_lease_ttl", 0), "default_lease_ttl")
            a.max_lease_ttl = parse_duration(cfg.get("max_lease_ttl", 0), "max_lease_ttl")
            ns.auth[mp] = a
            return Response(204)
        if op == "delete":
            if mp == "token/":
                raise bad("token credential backend cannot be disabled")
            a = ns.auth.pop(mp, None)
            if a is not None:
                for t in [t for t in self.tokens.values() if t.auth_mount == (ns, mp)]:
                    self.revoke_token(t)
            return Response(204)
        unsupported_op()

    def sys_auth_tune(self, ns, mp, req, op):
        a = ns.auth.get(mp)
        if a is None:
            raise bad('cannot fetch sysview for path "auth/%s"' % mp)
        if op == "read":
            return ok({"default_lease_ttl": a.default_lease_ttl or SYS_DEFAULT_TTL,
                       "max_lease_ttl": a.max_lease_ttl or SYS_MAX_TTL,
                       "force_no_cache": False, "description": a.description,
                       "token_type": "default-service"}, mount_type="system")
        if op == "update":
            d = req.data
            if "default_lease_ttl" in d:
                a.default_lease_ttl = parse_duration(d["default_lease_ttl"], "default_lease_ttl")
            if "max_lease_ttl" in d:
                a.max_lease_ttl = parse_duration(d["max_lease_ttl"], "max_lease_ttl")
            return Response(204)
        unsupported_op()

    def sys_policy_list(self, ns, legacy):
        keys = sorted(set(ns.policies) | {"root"})
        if legacy:
            data = {"keys": keys, "policies": keys}
            return ok(data, mount_type="system", extra=data)
        return ok({"keys": keys}, mount_type="system")

    def sys_policy(self, ns, name, req, op, legacy):
        name = name.strip("/").lower()
        if op == "list" and not name:
            return self.sys_policy_list(ns, legacy)
        if not name:
            raise bad("policy name must be provided")
        if op == "read":
            if name == "root" or name not in ns.policies:
                not_found()
            text = ns.policies[name].text
            if legacy:
                data = {"name": name, "rules": text}
                return ok(data, mount_type="system", extra=data)
            return ok({"name": name, "policy": text}, mount_type="system")
        if op == "update":
            d = req.data
            text = d.get("policy")
            if legacy and not text:
                text = d.get("rules")
            if not isinstance(text, str) or not text.strip():
                raise bad("'policy' parameter not supplied or empty")
            if name == "root":
                raise bad("cannot update root policy")
            try:
                ns.policies[name] = Policy(name, text)
            except PolicyParseError as e:
                raise bad("failed to parse policy: %s" % e)
            return Response(204)
        if op == "delete":
            if name in ("root", "default"):
                raise bad("cannot delete %s policy" % name)
            ns.policies.pop(name, None)
            return Response(204)
        unsupported_op()

    def sys_ns_list(self, ns):
        if not ns.children:
            not_found()
        keys = sorted(k + "/" for k in ns.children)
        info = {k + "/": c.ns_info() for k, c in ns.children.items()}
        return ok({"keys": keys, "key_info": info}, mount_type="ns_system")

    RESERVED_NS = ("root", "sys", "audit", "auth", "cubbyhole", "identity")

    def sys_namespace(self, ns, path, req, op):
        segs = [s for s in path.split("/") if s]
        if not segs:
            raise bad("namespace path must not be empty")
        parent = ns
        for s in segs[:-1]:
            parent = parent.children.get(s)
            if parent is None:
                if op == "update":
                    raise bad('parent namespace does not exist')
                not_found()
        name = segs[-1]
        if op == "read":
            c = parent.children.get(name)
            if c is None:
                not_found()
            return ok(c.ns_info(), mount_type="ns_system")
        if op == "list":
            c = parent.children.get(name)
            if c is None:
                not_found()
            return self.sys_ns_list(c)
        if op in ("update", "patch"):
            c = parent.children.get(name)
            d = req.data
            cm = to_strmap(d.get("custom_metadata"), "custom_metadata")
            if c is None:
                if op == "patch":
                    not_found()
                if name in self.RESERVED_NS or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                    raise bad('"%s" is a reserved path and cannot be used as a namespace name' % name
                              if name in self.RESERVED_NS else "invalid namespace name %q" % name)
                c = Namespace(name, parent, self.extra_mounts)
                parent.children[name] = c
            if cm is not None:
                c.custom_metadata = json_merge_patch(c.custom_metadata, cm) if op == "patch" else cm
            return ok(c.ns_info(), mount_type="ns_system")
        if op == "delete":
            c = parent.children.get(name)
            if c is None:
                return Response(204)
            if c.children:
                raise bad('cannot delete namespace ("%s") containing child namespaces' % c.path)
            del parent.children[name]
            for t in [t for t in self.tokens.values() if t.ns is c]:
                self.revoke_token(t)
            return ok({"status": "in-progress"}, mount_type="ns_system")
        unsupported_op()

    def sys_capabilities(self, req, self_, by_accessor=False):
        d = req.data
        t = req.token
        if not self_:
            if by_accessor:
                t = self.by_accessor.get(str(d.get("accessor", "")))
            else:
                t = self.tokens.get(str(d.get("token", "")))
            if t is None:
                raise bad("invalid token")
        paths = to_strlist(d.get("paths", d.get("path")), "paths")
        if not paths:
            raise bad("missing path")
        acl = self.acl_for(t)
        data = {}
        for p in paths:
            caps = acl.capabilities(req.ns.path[len(t.ns.path):] + p.lstrip("/"))
            caps.discard("subscribe")
            lst = ["root"] if "root" in caps else (["deny"] if not caps or "deny" in caps else sorted(caps))
            data[p] = lst
        if len(paths) == 1:
            data["capabilities"] = data[paths[0]]
        return ok(data, mount_type="system", extra=data)

    # ---------------- token auth ----------------

    def route_token(self, req, sub, op):
        R = Route
        sub = sub.rstrip("/") if sub not in ("",) else sub
        if sub in ("create", "create-orphan"):
            return R(lambda: self.token_create(req, orphan=sub == "create-orphan") if op == "update" else unsupported_op(), op)
        if sub == "lookup-self":
            return R(lambda: self.token_lookup(req.token) if op == "read" else unsupported_op(), op)
        if sub == "lookup" or sub.startswith("lookup/"):
            def lookup():
                if op not in ("read", "update"):
                    unsupported_op()
                tid = sub[len("lookup/"):] if sub.startswith("lookup/") else str(req.data.get("token", "") or "")
                t = self.tokens.get(tid) if tid else req.token
                if t is None or t.expired():
                    raise VaultError(403, ["bad token"])
                return self.token_lookup(t)
            return R(lookup, op)
        if sub == "lookup-accessor":
            def lookup_acc():
                if op != "update":
                    unsupported_op()
                t = self.by_accessor.get(str(req.data.get("accessor", "")))
                if t is None or t.expired():
                    raise bad("invalid accessor")
                resp = self.token_lookup(t)
                resp.body["data"]["id"] = ""
                return resp
            return R(lookup_acc, op)
        if sub == "renew-self":
            return R(lambda: self.token_renew(req.token, req) if op == "update" else unsupported_op(), op)
        if sub == "renew":
            def renew():
                if op != "update":
                    unsupported_op()
                t = self.tokens.get(str(req.data.get("token", "") or ""))
                if t is None or t.expired():
                    raise bad("token not found")
                return self.token_renew(t, req)
            return R(renew, op)
        if sub == "revoke-self":
            def revoke_self():
                if op != "update":
                    unsupported_op()
                self.revoke_token(req.token)
                return Response(204)
            return R(revoke_self, op)
        if sub in ("revoke", "revoke-orphan"):
            def revoke():
                if op != "update":
                    unsupported_op()
                tid = str(req.data.get("token", "") or "")
                if not tid:
                    raise bad("missing token ID")
                t = self.tokens.get(tid)
                if t is not None:
                    self.revoke_token(t)
                return Response(204)
            return R(revoke, op)
        if sub == "revoke-accessor":
            def revoke_acc():
                if op != "update":
                    unsupported_op()
                t = self.by_accessor.get(str(req.data.get("accessor", "")))
                if t is None:
                    raise bad("invalid accessor")
                self.revoke_token(t)
                return Response(204)
            return R(revoke_acc, op)
        if sub == "accessors":
            def accessors():
                if op != "list":
                    unsupported_op()
                keys = sorted(a for a, t in self.by_accessor.items() if t.ns is req.ns)
                return ok({"keys": keys}, mount_type="token")
            return R(accessors, op, sudo=True)
        return R(unsupported_path, op)

    def token_lookup(self, t):
        return ok(t.lookup_data(), mount_type="token")

    def token_create(self, req, orphan=False):
        d = req.data
        parent = req.token
        parent_root = "root" in parent.policies
        if "policies" in d and d["policies"] is not None:
            requested = to_strlist(d["policies"], "policies", lower=True)
        else:
            requested = [p for p in parent.policies]
        no_default = to_bool(d.get("no_default_policy", False), "no_default_policy")
        if not parent_root:
            for p in requested:
                if p != "default" and p not in parent.policies:
                    raise bad("child policies must be subset of parent")
        if "default" in requested and no_default:
            requested = [p for p in requested if p != "default"]
        policies = sanitize_policies(requested, not no_default)
        if not policies:
            raise bad("token must have at least one policy")
        ttl = parse_duration(d.get("ttl", d.get("lease")), "ttl")
        explicit = parse_duration(d.get("explicit_max_ttl"), "explicit_max_ttl")
        period = parse_duration(d.get("period"), "period")
        if ttl < 0 or explicit < 0 or period < 0:
            raise bad("ttl must be positive")
        renewable = to_bool(d.get("renewable", True), "renewable")
        num_uses = to_int(d.get("num_uses", 0), "num_uses")
        if num_uses < 0:
            raise bad("number of uses cannot be negative")
        no_parent = to_bool(d.get("no_parent", False), "no_parent")
        if no_parent and not parent_root:
            raise bad("root or sudo privileges required to create orphan token")
        tid = d.get("id")
        if tid:
            if not parent_root:
                raise bad("root or sudo privileges required to specify token id")
            tid = str(tid)
            if "." in tid:
                raise bad("token IDs can not contain periods")
            if tid in self.tokens:
                raise bad("cannot create a token with a duplicate ID")
        else:
            tid = self.new_token_id(req.ns)
        meta = to_strmap(d.get("meta"), "meta")
        name = str(d.get("display_name", "") or "")
        display = "token" if not name else "token-" + re.sub(r"[^a-zA-Z0-9-]", "-", name).lower()
        if policies == ["root"] and ttl == 0 and explicit == 0 and period == 0:
            ttl = 0
        else:
            if period:
                ttl = period
            elif ttl == 0:
                ttl = SYS_DEFAULT_TTL
            if explicit and ttl > explicit:
                ttl = explicit
            if not period and ttl > SYS_MAX_TTL:
                ttl = SYS_MAX_TTL
        t = Token(tid, req.ns, policies, ttl=ttl, explicit_max_ttl=explicit, renewable=renewable and ttl > 0,
                  num_uses=num_uses, display_name=display, meta=meta,
                  path="auth/token/create-orphan" if orphan else "auth/token/create",
                  orphan=orphan or no_parent, period=period,
                  parent=None if (orphan or no_parent) else parent.id)
        self._add_token(t)
        return ok(None, auth=t.auth_block(), mount_type="token")

    def token_renew(self, t, req):
        if t.expire_at is None or not t.renewable:
            raise bad("lease is not renewable")
        inc = parse_duration(req.data.get("increment"), "increment")
        now = time.time()
        if t.period:
            new_ttl = t.period
        else:
            new_ttl = inc if inc > 0 else t.ttl
        limits = [x for x in (t.explicit_max_ttl, (t.max_ttl or SYS_MAX_TTL) if not t.period else 0) if x]
        warnings = None
        if limits:
            max_abs = t.created + min(limits)
            if now + new_ttl > max_abs:
                capped = max(0, int(max_abs - now))
                warnings = ['TTL of "%s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
                            % (go_duration(new_ttl), go_duration(capped))]
                new_ttl = capped
        t.expire_at = now + new_ttl
        t.last_renewal = now
        return ok(None, warnings, auth=t.auth_block(), mount_type="token")

    def issue_login_token(self, ns, am, role, display_name, metadata):
        policies = sanitize_policies(role.get("token_policies", []), not role.get("token_no_default_policy", False))
        max_ttl = role.get("token_max_ttl", 0) or am.max_lease_ttl or SYS_MAX_TTL
        explicit = role.get("token_explicit_max_ttl", 0)
        period = role.get("token_period", 0)
        ttl = period or role.get("token_ttl", 0) or am.default_lease_ttl or SYS_DEFAULT_TTL
        ttl = min(ttl, max_ttl) if not period else ttl
        if explicit:
            ttl = min(ttl, explicit)
        t = Token(self.new_token_id(ns), ns, policies, ttl=ttl, explicit_max_ttl=explicit,
                  max_ttl=max_ttl, renewable=True, num_uses=role.get("token_num_uses", 0),
                  display_name=display_name, meta=metadata, path="auth/%slogin" % am.path,
                  orphan=True, period=period, auth_mount=(ns, am.path))
        t.entity_id = new_uuid()
        self._add_token(t)
        return ok(None, auth=t.auth_block(metadata), mount_type=am.type)

    # shared token_* role fields (tokenutil)
    TOKEN_FIELDS = ("token_policies", "policies", "token_ttl", "ttl", "token_max_ttl", "max_ttl",
                    "token_explicit_max_ttl", "token_no_default_policy", "token_num_uses",
                    "token_period", "period", "token_type", "token_bound_cidrs", "bound_cidrs",
                    "token_strictly_bind_ip")

    def _apply_token_fields(self, role, d):
        if "token_policies" in d:
            role["token_policies"] = to_strlist(d["token_policies"], "token_policies", lower=True)
        elif "policies" in d:
            role["token_policies"] = to_strlist(d["policies"], "policies", lower=True)
        for f, alias in (("token_ttl", "ttl"), ("token_max_ttl", "max_ttl"), ("token_period", "period")):
            if f in d:
                role[f] = parse_duration(d[f], f)
            elif alias in d:
                role[f] = parse_duration(d[alias], alias)
        if "token_explicit_max_ttl" in d:
            role["token_explicit_max_ttl"] = parse_duration(d["token_explicit_max_ttl"], "token_explicit_max_ttl")
        if "token_no_default_policy" in d:
            role["token_no_default_policy"] = to_bool(d["token_no_default_policy"], "token_no_default_policy")
        if "token_num_uses" in d:
            role["token_num_uses"] = to_int(d["token_num_uses"], "token_num_uses")
        if "token_bound_cidrs" in d:
            role["token_bound_cidrs"] = to_strlist(d["token_bound_cidrs"], "token_bound_cidrs")
        if "token_type" in d and d["token_type"]:
            role["token_type"] = str(d["token_type"])
        if role.get("token_max_ttl") and role.get("token_ttl", 0) > role["token_max_ttl"]:
            raise bad('"token_ttl" value must be less than "token_max_ttl" value')

    @staticmethod
    def _token_fields_out(role):
        pol = list(role.get("token_policies", []))
        return {
            "token_bound_cidrs": list(role.get("token_bound_cidrs", [])),
            "token_explicit_max_ttl": role.get("token_explicit_max_ttl", 0),
            "token_max_ttl": role.get("token_max_ttl", 0),
            "token_no_default_policy": role.get("token_no_default_policy", False),
            "token_num_uses": role.get("token_num_uses", 0),
            "token_period": role.get("token_period", 0),
            "token_policies": pol,
            "token_ttl": role.get("token_ttl", 0),
            "token_type": role.get("token_type", "default"),
            "policies": pol,
            "period": role.get("token_period", 0),
        }

    # ---------------- cert auth ----------------

    CERT_FIELDS = ("name", "certificate", "display_name", "allowed_common_names", "allowed_names",
                   "allowed_dns_sans", "allowed_email_sans", "allowed_uri_sans",
                   "allowed_organizational_units", "required_extensions",
                   "allowed_metadata_extensions", "ocsp_enabled", "ocsp_ca_certificates",
                   "ocsp_servers_override", "ocsp_fail_open", "ocsp_query_all_servers", "lease")

    def route_cert(self, req, am, sub, op):
        R = Route
        sub = sub.rstrip("/")
        if sub == "login":
            return R(lambda: self.cert_login(req, am) if op == "update" else unsupported_op(), op, unauth=True)
        if sub == "certs":
            return R(lambda: self._list_roles(am, op), op)
        if sub.startswith("certs/"):
            name = sub[len("certs/"):].lower()
            return R(lambda: self.cert_role(am, name, req, op), op if op != "update" or name in am.roles else "create")
        if sub == "config":
            return R(lambda: Response(204) if op == "update" else
                     (ok({"disable_binding": False, "enable_identity_alias_metadata": False,
                          "ocsp_cache_size": 100, "role_cache_size": 200}, mount_type="cert")
                      if op == "read" else unsupported_op()), op)
        return R(unsupported_path, op)

    @staticmethod
    def _list_roles(am, op):
        if op != "list":
            unsupported_op()
        if not am.roles:
            not_found()
        return ok({"keys": sorted(am.roles)}, mount_type=am.type)

    def cert_role(self, am, name, req, op):
        if not name:
            raise bad("missing name")
        if op == "read":
            role = am.roles.get(name)
            if role is None:
                not_found()
            data = {
                "certificate": role["certificate"],
                "display_name": role["display_name"],
                "allowed_common_names": list(role["allowed_common_names"]),
                "allowed_names": list(role["allowed_common_names"]),
                "allowed_dns_sans": list(role["allowed_dns_sans"]),
                "allowed_email_sans": [], "allowed_uri_sans": [],
                "allowed_organizational_units": list(role["allowed_organizational_units"]),
                "allowed_metadata_extensions": [], "required_extensions": [],
                "ocsp_enabled": False, "ocsp_ca_certificates": "", "ocsp_servers_override": [],
                "ocsp_fail_open": False, "ocsp_query_all_servers": False,
                "ttl": role.get("token_ttl", 0), "max_ttl": role.get("token_max_ttl", 0),
                "bound_cidrs": [],
            }
            data.update(self._token_fields_out(role))
            return ok(data, mount_type="cert")
        if op == "update":
            d = req.data
            warn = unknown_param_warning(d, self.CERT_FIELDS + self.TOKEN_FIELDS)
            role = dict(am.roles.get(name) or {
                "certificate": "", "ders": [], "display_name": name,
                "allowed_common_names": [], "allowed_dns_sans": [],
                "allowed_organizational_units": []})
            if "certificate" in d:
                cert = d["certificate"]
                if not isinstance(cert, str):
                    raise conv_error(cert, "certificate", "string")
                role["certificate"] = cert
            if not role["certificate"]:
                raise bad("must specify certificate")
            ders = pem_to_ders(role["certificate"])
            if not ders:
                raise bad("failed to parse certificate")
            try:
                for der in ders:
                    X509(der)
            except Exception:
                raise bad("failed to parse certificate")
            role["ders"] = ders
            if d.get("display_name"):
                role["display_name"] = str(d["display_name"])
            acn = d.get("allowed_common_names", d.get("allowed_names"))
            if acn is not None:
                role["allowed_common_names"] = to_strlist(acn, "allowed_common_names")
            if "allowed_dns_sans" in d:
                role["allowed_dns_sans"] = to_strlist(d["allowed_dns_sans"], "allowed_dns_sans")
            if "allowed_organizational_units" in d:
                role["allowed_organizational_units"] = to_strlist(d["allowed_organizational_units"], "allowed_organizational_units")
            self._apply_token_fields(role, d)
            am.roles[name] = role
            return no_content([warn] if warn else None, mount_type="cert")
        if op == "delete":
            am.roles.pop(name, None)
            return Response(204)
        unsupported_op()

    def cert_login(self, req, am):
        d = req.data
        name = str(d.get("name", "") or "").lower()
        if not req.is_tls:
            raise bad("tls connection required")
        if not req.peer_der:
            raise bad("client certificate must be supplied")
        try:
            leaf = X509(req.peer_der)
        except Exception:
            raise bad("invalid certificate or no client certificate supplied")
        now = time.time()
        if name:
            candidates = [(name, am.roles[name])] if name in am.roles else []
        else:
            candidates = sorted(am.roles.items())
        trusted = []
        if leaf.not_before <= now <= leaf.not_after:
            for rn, role in candidates:
                for der in role["ders"]:
                    if der == leaf.der:
                        trusted.append((rn, role))
                        break
                    c = X509(der)
                    if (leaf.issuer_raw == c.subject_raw and c.not_before <= now <= c.not_after
                            and leaf.verify_signed_by(c)):
                        trusted.append((rn, role))
                        break
        if not trusted:
            raise bad("invalid certificate or no client certificate supplied")
        cn = leaf.common_name()
        for rn, role in trusted:
            acn = role["allowed_common_names"]
            if acn and not any(glob_match(p, cn) for p in acn):
                continue
            metadata = {
                "authority_key_id": hex_colon(leaf.aki),
                "cert_name": rn,
                "common_name": cn,
                "serial_number": str(leaf.serial),
                "subject_key_id": hex_colon(leaf.ski),
            }
            return self.issue_login_token(req.ns, am, role, "%s-%s" % (am.path.rstrip("/"), role["display_name"] or rn), metadata)
        raise bad("no chain matching all constraints could be found for this login certificate")

    # ---------------- AppRole ----------------

    APPROLE_FIELDS = ("bind_secret_id", "secret_id_bound_cidrs", "secret_id_num_uses", "secret_id_ttl",
                      "local_secret_ids", "role_id", "bound_cidr_list", "role_name")

    def route_approle(self, req, am, sub, op):
        R = Route
        sub = sub.rstrip("/")
        if sub == "login":
            return R(lambda: self.approle_login(req, am) if op == "update" else unsupported_op(), op, unauth=True)
        if sub == "role":
            return R(lambda: self._list_roles(am, op), op)
        if not sub.startswith("role/"):
            return R(unsupported_path, op)
        parts = sub[len("role/"):].split("/")
        name = parts[0]
        rest = "/".join(parts[1:])
        if rest == "":
            return R(lambda: self.approle_role(am, name, req, op), op if op != "update" or name in am.roles else "create")
        if rest == "role-id":
            return R(lambda: self.approle_role_id(am, name, req, op), op)
        if rest in ("secret-id", "custom-secret-id"):
            return R(lambda: self.approle_secret_id(am, name, req, op, custom=rest == "custom-secret-id"), op)
        if rest in ("secret-id/lookup", "secret-id/destroy", "secret-id-accessor/lookup", "secret-id-accessor/destroy"):
            return R(lambda: self.approle_secret_id_op(am, name, rest, req, op), op)
        return R(unsupported_path, op)

    def approle_role(self, am, name, req, op):
        if op == "read":
            role = am.roles.get(name)
            if role is None:
                not_found()
            data = {
                "bind_secret_id": role["bind_secret_id"],
                "local_secret_ids": False,
                "secret_id_bound_cidrs": role.get("secret_id_bound_cidrs") or None,
                "secret_id_num_uses": role["secret_id_num_uses"],
                "secret_id_ttl": role["secret_id_ttl"],
            }
            data.update(self._token_fields_out(role))
            return ok(data, mount_type="approle")
        if op == "update":
            d = req.data
            warn = unknown_param_warning(d, self.APPROLE_FIELDS + self.TOKEN_FIELDS)
            role = dict(am.roles.get(name) or {"bind_secret_id": True, "secret_id_num_uses": 0,
                                               "secret_id_ttl": 0, "role_id": new_uuid()})
            if "bind_secret_id" in d:
                role["bind_secret_id"] = to_bool(d["bind_secret_id"], "bind_secret_id")
            if "secret_id_num_uses" in d:
                role["secret_id_num_uses"] = to_int(d["secret_id_num_uses"], "secret_id_num_uses")
                if role["secret_id_num_uses"] < 0:
                    raise bad("secret_id_num_uses cannot be negative")
            if "secret_id_ttl" in d:
                role["secret_id_ttl"] = parse_duration(d["secret_id_ttl"], "secret_id_ttl")
            for f in ("secret_id_bound_cidrs", "bound_cidr_list"):
                if f in d:
                    role["secret_id_bound_cidrs"] = to_strlist(d[f], f)
            if name not in am.roles and d.get("role_id"):
                role["role_id"] = str(d["role_id"])
            self._apply_token_fields(role, d)
            if (not role["bind_secret_id"] and not role.get("secret_id_bound_cidrs")
                    and not role.get("token_bound_cidrs")):
                raise bad("at least one constraint should be enabled on the role")
            am.roles[name] = role
            return no_content([warn] if warn else None, mount_type="approle")
        if op == "delete":
            am.roles.pop(name, None)
            for sid in [s for s, e in am.secret_ids.items() if e["role"] == name]:
                del am.secret_ids[sid]
            return Response(204)
        unsupported_op()

    def approle_role_id(self, am, name, req, op):
        role = am.roles.get(name)
        if op == "read":
            if role is None:
                not_found()
            return ok({"role_id": role["role_id"]}, mount_type="approle")
        if op == "update":
            if role is None:
                raise bad('role "%s" does not exist' % name)
            rid = str(req.data.get("role_id", "") or "")
            if not rid:
                raise bad("missing role_id")
            role["role_id"] = rid
            return Response(204)
        unsupported_op()

    def approle_secret_id(self, am, name, req, op, custom=False):
        role = am.roles.get(name)
        if op == "list" and not custom:
            if role is None:
                not_found()
            keys = sorted(e["accessor"] for e in am.secret_ids.values() if e["role"] == name)
            if not keys:
                not_found()
            return ok({"keys": keys}, mount_type="approle")
        if op != "update":
            unsupported_op()
        if role is None:
            raise bad('role "%s" does not exist' % name)
        d = req.data
        ttl = parse_duration(d.get("ttl"), "ttl") or role["secret_id_ttl"]
        if role["secret_id_ttl"] and ttl > role["secret_id_ttl"]:
            ttl = role["secret_id_ttl"]
        num_uses = to_int(d.get("num_uses", 0), "num_uses") or role["secret_id_num_uses"]
        meta = d.get("metadata")
        if isinstance(meta, str) and meta:
            try:
                meta = json.loads(meta)
            except ValueError:
                raise bad("failed to parse metadata: invalid JSON")
        sid = str(d.get("secret_id")) if custom and d.get("secret_id") else new_uuid()
        if custom and not d.get("secret_id"):
            raise bad("missing secret_id")
        now = time.time()
        entry = {"role": name, "accessor": new_uuid(), "created": now, "ttl": ttl,
                 "expires": now + ttl if ttl else None, "num_uses": num_uses,
                 "metadata": meta if isinstance(meta, dict) else {}}
        am.secret_ids[sid] = entry
        return ok({"secret_id": sid, "secret_id_accessor": entry["accessor"], "secret_id_ttl": ttl,
                   "secret_id_num_uses": num_uses}, mount_type="approle")

    def approle_secret_id_op(self, am, name, rest, req, op):
        if op != "update":
            unsupported_op()
        d = req.data
        if rest.startswith("secret-id-accessor"):
            acc = str(d.get("secret_id_accessor", "") or "")
            found = [(s, e) for s, e in am.secret_ids.items() if e["accessor"] == acc and e["role"] == name]
        else:
            sid = str(d.get("secret_id", "") or "")
            e = am.secret_ids.get(sid)
            found = [(sid, e)] if e is not None and e["role"] == name else []
        if rest.endswith("destroy"):
            for s, _e in found:
                del am.secret_ids[s]
            return Response(204)
        if not found:
            return Response(204)
        _s, e = found[0]
        return ok({"cidr_list": [], "creation_time": rfc3339(e["created"]),
                   "expiration_time": rfc3339(e["expires"]) if e["expires"] else "0001-01-01T00:00:00Z",
                   "last_updated_time": rfc3339(e["created"]), "metadata": e["metadata"],
                   "secret_id_accessor": e["accessor"], "secret_id_num_uses": e["num_uses"],
                   "secret_id_ttl": e["ttl"], "token_bound_cidrs": []}, mount_type="approle")

    def approle_login(self, req, am):
        d = req.data
        role_id = str(d.get("role_id", "") or "").strip()
        if not role_id:
            raise bad("missing role_id")
        found = [(n, r) for n, r in am.roles.items() if r["role_id"] == role_id]
        if not found:
            raise bad("invalid role or secret ID")
        name, role = found[0]
        if role["bind_secret_id"]:
            sid = str(d.get("secret_id", "") or "").strip()
            if not sid:
                raise bad("missing secret_id")
            e = am.secret_ids.get(sid)
            if e is None or e["role"] != name or (e["expires"] and e["expires"] <= time.time()):
                raise bad("invalid role or secret ID")
            if e["num_uses"] > 0:
                e["num_uses"] -= 1
                if e["num_uses"] == 0:
                    del am.secret_ids[sid]
        return self.issue_login_token(req.ns, am, role, "approle", {"role_name": name})

    # ---------------- test-control helpers ----------------

    def control_tokens(self, body, action):
        targets = []
        if body.get("all_non_root"):
            targets = [t for t in self.tokens.values() if "root" not in t.policies]
        elif body.get("token"):
            t = self.tokens.get(str(body["token"]))
            targets = [t] if t else []
        elif body.get("accessor"):
            t = self.by_accessor.get(str(body["accessor"]))
            targets = [t] if t else []
        else:
            raise bad("one of token, accessor or all_non_root is required")
        now = time.time()
        for t in targets:
            if action == "expire":
                t.expire_at = now - 0.001
            else:
                self.revoke_token(t)
        return len(targets)


# --------------------------------------------------------------------------
# Test controls state (faults, request log, stats)
# --------------------------------------------------------------------------

class Fault:
    def __init__(self, fid, spec):
        self.id = fid
        self.spec = spec
        self.method = spec.get("method")
        if self.method is not None and not isinstance(self.method, str):
            raise bad("method must be a string")
        self.path = spec.get("path")
        try:
            self.path_re = re.compile(self.path) if self.path else None
        except (re.error, TypeError) as e:
            raise bad("invalid path regex: %s" % e)
        self.status = to_int(spec.get("status", 0), "status")
        self.body = spec.get("body")
        self.raw_body = spec.get("raw_body")
        self.headers = spec.get("headers") or {}
        if not isinstance(self.headers, dict):
            raise bad("headers must be an object")
        self.delay_ms = to_int(spec.get("delay_ms", 0), "delay_ms")
        self.drop = to_bool(spec.get("drop", False), "drop")
        self.times = to_int(spec.get("times", 1), "times")
        self.hits = 0

    def matches(self, method, path):
        if self.times == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_re is not None and not self.path_re.search(path):
            return False
        return True

    def describe(self):
        d = dict(self.spec)
        d.update({"id": self.id, "times": self.times, "hits": self.hits})
        return d


class Controls:
    def __init__(self, max_log):
        self.lock = threading.Lock()
        self.faults = []
        self.fault_seq = 0
        self.log = []
        self.log_seq = 0
        self.max_log = max_log
        self.stats = {"connections": 0, "tls_handshakes": 0, "requests": 0}
        self.conn_seq = 0

    def take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.hits += 1
                    if f.times > 0:
                        f.times -= 1
                    return f
        return None


def redact_token(value):
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def bearer_redact(value):
    v = value.strip()
    if v[:7].lower() == "bearer ":
        return v[:7] + redact_token(v[7:].strip())
    return redact_token(v)


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------

class _Drop(Exception):
    """Close the connection without answering."""


STATUS_TEXT = dict((s.value, s.phrase) for s in http.HTTPStatus)
STATUS_TEXT.update({429: "Too Many Requests", 472: "Data Protection Sealed"})


class VaultHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, addr, handler, vault, controls, ssl_ctx, args):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.vault = vault
        self.controls = controls
        self.ssl_ctx = ssl_ctx
        self.args = args
        super().__init__(addr, handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        if self.args.verbose:
            traceback.print_exc(file=sys.stderr)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vault_server"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    # -- connection setup (TLS handshake happens here, in the worker thread)
    def setup(self):
        srv = self.server
        c = srv.controls
        with c.lock:
            c.stats["connections"] += 1
            c.conn_seq += 1
            self.conn_id = c.conn_seq
        self.peer_der = None
        self.peer_subject = None
        self.is_tls = False
        if srv.ssl_ctx is not None:
            raw = self.request
            raw.settimeout(30)
            try:
                tls = srv.ssl_ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                tls.do_handshake()
            except Exception:
                try:
                    raw.close()
                except OSError:
                    pass
                raise
            self.request = tls
            self.is_tls = True
            with c.lock:
                c.stats["tls_handshakes"] += 1
            try:
                self.peer_der = tls.getpeercert(binary_form=True)
            except (ValueError, ssl.SSLError):
                self.peer_der = None
            if self.peer_der:
                try:
                    self.peer_subject = X509(self.peer_der).subject_str()
                except Exception:
                    self.peer_subject = None
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            if self.is_tls:
                try:
                    self.request.close()
                except OSError:
                    pass

    def log_message(self, fmt, *args):
        if self.server.args.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # -- low level writing
    def _write(self, status, body_bytes, headers, content_type="application/json", head=False):
        lines = ["HTTP/1.1 %d %s" % (status, STATUS_TEXT.get(status, "Unknown"))]
        hdrs = {"Cache-Control": "no-store"}
        if content_type and (body_bytes or status not in (204, 304)):
            hdrs["Content-Type"] = content_type
        hdrs["Date"] = self.date_time_string()
        hdrs.update(headers or {})
        if self.close_connection:
            hdrs["Connection"] = "close"
        if status == 204 or status == 304:
            body_bytes = b""
            hdrs.pop("Content-Length", None)
            hdrs["Content-Length"] = "0"
        else:
            hdrs["Content-Length"] = str(len(body_bytes))
        for k, v in hdrs.items():
            lines.append("%s: %s" % (k, v))
        out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        if not head:
            out += body_bytes
        self.wfile.write(out)
        self.wfile.flush()

    def send_json(self, status, obj, headers=None, head=False):
        body = b"" if obj is None else (json.dumps(obj) + "\n").encode("utf-8")
        self._write(status, body, headers, head=head)

    def send_error(self, code, message=None, explain=None):
        """Used by BaseHTTPRequestHandler for malformed requests."""
        self.close_connection = True
        try:
            self.send_json(code, {"errors": [message] if message else []})
        except OSError:
            pass

    def handle_expect_100(self):
        cl = self.headers.get("Content-Length")
        if cl and cl.strip().isdigit() and int(cl) > self.server.args.max_request_bytes:
            self.close_connection = True
            self.send_json(413, {"errors": ["failed to parse JSON input: http: request body too large"]})
            return False
        return super().handle_expect_100()

    # -- request loop
    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414, "request URI too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.dispatch()
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (socket.timeout, TimeoutError, ConnectionError, ssl.SSLError, BrokenPipeError):
            self.close_connection = True
        except OSError:
            self.close_connection = True

    def read_body(self):
        """Returns the body bytes, or raises VaultError (413/400)."""
        limit = self.server.args.max_request_bytes
        te = self.headers.get("Transfer-Encoding", "")
        if te and te.strip().lower() != "identity":
            if "chunked" not in te.lower():
                self.close_connection = True
                raise VaultError(501, ["unsupported transfer encoding"])
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunked body")
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise bad("malformed chunked encoding")
                if size == 0:
                    while True:  # trailers
                        tl = self.rfile.readline(65537)
                        if tl in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > limit:
                    self.close_connection = True
                    raise VaultError(413, ["failed to parse JSON input: http: request body too large"])
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        cl = self.headers.get("Content-Length")
        if cl is None or cl.strip() == "":
            return b""
        try:
            n = int(cl.strip())
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise bad("invalid Content-Length")
        if n > limit:
            self.close_connection = True
            if n <= max(4 * limit, 64 << 20):
                # Drain the body so the client finishes sending and reads the 413
                # instead of hitting a connection reset.
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise VaultError(413, ["failed to parse JSON input: http: request body too large"])
        body = self.rfile.read(n)
        if len(body) < n:
            raise ConnectionError("short body")
        return body

    def dispatch(self):
        srv = self.server
        args = srv.args
        method = self.command.upper()
        target = self.path
        if target.startswith("http://") or target.startswith("https://"):
            parts = urllib.parse.urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        if raw_path.startswith("/__test__/") or raw_path == "/__test__":
            if args.test_controls:
                try:
                    body = self.read_body()
                    self.test_control(method, raw_path, raw_query, body)
                except VaultError as e:
                    self.send_json(e.status, {"errors": e.errors}, e.headers)
                except (ConnectionError, OSError):
                    raise
                except Exception as e:  # never leak a traceback
                    if args.verbose:
                        traceback.print_exc()
                    self.send_json(500, {"errors": ["internal error: %s" % type(e).__name__]})
                return
        try:
            body = self.read_body()
        except VaultError as e:
            self.send_json(e.status, {"errors": e.errors}, e.headers)
            return
        is_v1 = raw_path.startswith("/v1/") or raw_path == "/v1"
        if not is_v1:
            self.send_json(404, {"errors": []})
            return
        c = srv.controls
        with c.lock:
            c.stats["requests"] += 1
            c.log_seq += 1
            hdrs = {}
            for k, v in self.headers.items():
                lk = k.lower()
                if lk == "x-vault-token":
                    v = redact_token(v)
                elif lk == "authorization":
                    v = bearer_redact(v)
                hdrs[k] = v if k not in hdrs else hdrs[k] + ", " + v
            entry = {"seq": c.log_seq, "time": time.time(), "method": method, "path": raw_path,
                     "query": raw_query, "headers": hdrs,
                     "body": body[:LOG_BODY_MAX].decode("utf-8", "replace"),
                     "client_cert_subject": self.peer_subject, "connection_id": self.conn_id,
                     "tls": self.is_tls}
            if len(body) > LOG_BODY_MAX:
                entry["body_truncated"] = True
            c.log.append(entry)
            if len(c.log) > c.max_log:
                del c.log[:len(c.log) - c.max_log]
        fault = c.take_fault(method, raw_path) if c.faults else None
        if fault is not None:
            if fault.delay_ms > 0:
                time.sleep(fault.delay_ms / 1000.0)
            if fault.drop:
                raise _Drop()
            if fault.status:
                hdrs = {str(k): str(v) for k, v in fault.headers.items()}
                if fault.raw_body is not None:
                    ctype = hdrs.pop("Content-Type", "text/plain; charset=utf-8")
                    self._write(fault.status, str(fault.raw_body).encode("utf-8"), hdrs, ctype,
                                head=method == "HEAD")
                else:
                    b = fault.body if fault.body is not None else {"errors": []}
                    ctype = hdrs.pop("Content-Type", "application/json")
                    self._write(fault.status, (json.dumps(b) + "\n").encode("utf-8"), hdrs, ctype,
                                head=method == "HEAD")
                return
        resp = self.vault_response(method, raw_path, raw_query, body)
        head = method == "HEAD"
        if resp.raw is not None:
            self._write(resp.status, resp.raw, resp.headers, resp.content_type, head=head)
        else:
            self.send_json(resp.status, resp.body, resp.headers, head=head)

    def vault_response(self, method, raw_path, raw_query, body):
        vault = self.server.vault
        try:
            # Go decodes %XX (including %2F) before routing, then ServeMux
            # redirects non-canonical paths (.., ., //) to the cleaned path.
            try:
                path = urllib.parse.unquote(raw_path, errors="strict")
            except UnicodeDecodeError:
                path = urllib.parse.unquote(raw_path, errors="surrogateescape")
            if re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
                self.close_connection = True
                return Response(400, {"errors": ["invalid URL escape"]})
            clean = go_clean_path(path)
            if clean != path:
                loc = urllib.parse.quote(clean, safe="/:@!$&'()*+,;=-._~")
                if raw_query:
                    loc += "?" + raw_query
                html = '<a href="%s">Moved Permanently</a>.\n\n' % loc
                return Response(301, headers={"Location": loc}, raw=html.encode() if method in ("GET", "HEAD") else b"",
                                content_type="text/html; charset=utf-8")
            rel = path[len("/v1/"):] if path.startswith("/v1/") else ""
            with vault.lock:
                sealed = vault.sealed
                standby = vault.standby
            if sealed and rel not in ("sys/health", "sys/seal-status", "sys/init"):
                return Response(503, {"errors": ["Vault is sealed"]})
            if standby is not None and rel not in ("sys/health", "sys/seal-status", "sys/leader", "sys/init"):
                loc = standby[0].rstrip("/") + raw_path + ("?" + raw_query if raw_query else "")
                return Response(standby[1], headers={"Location": loc}, raw=b"")
            req = Req()
            req.method = method
            req.raw_path = raw_path
            req.path = rel
            req.raw_query = raw_query
            req.query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
            req.headers = self.headers
            req.body = body
            req.peer_der = self.peer_der
            req.is_tls = self.is_tls
            if method == "HEAD" and rel != "sys/health":
                return Response(405, {"errors": []})
            return vault.handle(req)
        except VaultError as e:
            return Response(e.status, {"errors": e.errors}, e.headers)
        except RecursionError:
            return Response(400, {"errors": ["failed to parse JSON input: exceeded max depth"]})
        except Exception as e:
            if self.server.args.verbose:
                traceback.print_exc()
            return Response(500, {"errors": ["1 error occurred:\n\t* internal error\n\n"]})

    # -- test controls
    def test_control(self, method, raw_path, raw_query, body):
        srv = self.server
        c = srv.controls
        vault = srv.vault
        path = raw_path.rstrip("/")
        data = parse_json_body(body) if method in ("POST", "PUT") else {}
        if path == "/__test__/faults":
            if method in ("POST", "PUT"):
                with c.lock:
                    c.fault_seq += 1
                    f = Fault(c.fault_seq, data)
                    c.faults.append(f)
                return self.send_json(200, {"id": f.id})
            if method == "GET":
                with c.lock:
                    return self.send_json(200, {"faults": [f.describe() for f in c.faults]})
            if method == "DELETE":
                with c.lock:
                    c.faults = []
                return self.send_json(200, {"cleared": True})
        elif path.startswith("/__test__/faults/") and method == "DELETE":
            fid = path.rsplit("/", 1)[1]
            with c.lock:
                c.faults = [f for f in c.faults if str(f.id) != fid]
            return self.send_json(200, {"cleared": True})
        elif path == "/__test__/seal" and method in ("POST", "PUT"):
            with vault.lock:
                vault.sealed = to_bool(data.get("sealed", True), "sealed")
            return self.send_json(200, {"sealed": vault.sealed})
        elif path == "/__test__/standby" and method in ("POST", "PUT"):
            target = data.get("redirect_to")
            with vault.lock:
                if target:
                    vault.standby = (str(target), to_int(data.get("status", 307), "status") or 307)
                else:
                    vault.standby = None
            return self.send_json(200, {"standby": vault.standby is not None})
        elif path in ("/__test__/tokens/expire", "/__test__/tokens/revoke") and method in ("POST", "PUT"):
            with vault.lock:
                n = vault.control_tokens(data, path.rsplit("/", 1)[1])
            return self.send_json(200, {"affected": n})
        elif path == "/__test__/requests":
            if method == "GET":
                with c.lock:
                    return self.send_json(200, {"requests": list(c.log)})
            if method == "DELETE":
                with c.lock:
                    c.log = []
                return self.send_json(200, {"cleared": True})
        elif path == "/__test__/stats":
            if method == "GET":
                with c.lock:
                    return self.send_json(200, dict(c.stats))
            if method == "DELETE":
                with c.lock:
                    for k in c.stats:
                        c.stats[k] = 0
                return self.send_json(200, {"cleared": True})
        elif path == "/__test__/health" and method == "GET":
            return self.send_json(200, {"ok": True})
        raise VaultError(404, [])


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def build_ssl_context(args):
    if not args.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.tls_cert, args.tls_key or None)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Vault-compatible test server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--pid-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--root-token", default="root")
    ap.add_argument("--test-controls", action="store_true")
    ap.add_argument("--mount", action="append", default=[])
    ap.add_argument("--namespace", action="append", default=[])
    ap.add_argument("--max-request-bytes", type=int, default=32 * 1024 * 1024)
    ap.add_argument("--max-log-entries", type=int, default=20000)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started the server exits (test fixtures "
                         "that crash or are killed then leave no server behind)")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert/--tls-key")
    return args


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    vault = Vault(args.root_token, args.mount, args.namespace)
    controls = Controls(args.max_log_entries)
    ssl_ctx = build_ssl_context(args)
    srv = VaultHTTPServer((args.host, args.port), Handler, vault, controls, ssl_ctx, args)
    port = srv.server_address[1]
    host = args.host
    if ":" in host:
        host = "[%s]" % host
    url = "%s://%s:%d" % ("https" if ssl_ctx else "http", host, port)

    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    if args.pid_file:
        write_atomic(args.pid_file, "%d\n" % os.getpid())
    if args.ready_file:
        write_atomic(args.ready_file, url + "\n")
    print("vault_server listening on %s" % url, flush=True)
    parent = os.getppid()
    try:
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break  # reparented: whoever started us is gone
    finally:
        srv.shutdown()
        srv.server_close()
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
