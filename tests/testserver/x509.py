"""Minimal X.509 / DER parsing and signature verification (standard library only).

Enough of a certificate to name a TLS client (subject for the request log)
and to check Vault's cert auth rules: subject/issuer, validity, CN, key ids,
CA flag, and ECDSA (P-256/P-384) or RSA PKCS#1 v1.5 signatures in pure
Python.  Pure functions; thread-safe.
"""

import base64
import datetime
import hashlib
import re

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
