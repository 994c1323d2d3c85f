"""Credentials the server accepts: static keys given on the command line,
and temporary ones it issues itself (STS, IMDS, ECS) with an expiry.

lookup() is the SigV4 verifier's view of the store: the secret key and the
identity for an access key id, after checking the session token and the
expiry as AWS does (UnrecognizedClientException / ExpiredTokenException).

Thread safety: CredentialStore.lock guards every field.
"""

import hmac
import string
import threading

from .sigv4 import MSG_BAD_TOKEN, MSG_EXPIRED_TOKEN, AuthError, Identity

UPPER_DIGITS = string.ascii_uppercase + "234567"
SECRET_CHARS = string.ascii_letters + string.digits + "+/"


class Credential:
    __slots__ = ("key_id", "secret", "token", "expires", "arn", "kind")

    def __init__(self, key_id, secret, token, expires, arn, kind):
        self.key_id, self.secret, self.token = key_id, secret, token
        self.expires, self.arn, self.kind = expires, arn, kind

    def as_dict(self):
        """The credential as the credential endpoints serve it (times added by the caller)."""
        return {"AccessKeyId": self.key_id, "SecretAccessKey": self.secret, "Token": self.token}


class CredentialStore:
    def __init__(self, rng, account):
        self.lock = threading.Lock()
        self.rng = rng
        self.account = account
        self.by_key = {}
        self.static = []

    def add_static(self, key_id, secret, token=None, arn=None):
        arn = arn or "arn:aws:iam::%s:user/kmsplug-test" % self.account
        cred = Credential(key_id, secret, token, None, arn, "static")
        with self.lock:
            self.by_key[key_id] = cred
            self.static.append(cred)
        return cred

    def _rand(self, alphabet, n):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def issue(self, kind, arn, ttl, now):
        """New temporary credentials (ASIA... key, session token) valid for ttl seconds."""
        with self.lock:
            cred = Credential("ASIA" + self._rand(UPPER_DIGITS, 16), self._rand(SECRET_CHARS, 40),
                              "IQoJb3JpZ2luX2Vj" + self._rand(SECRET_CHARS, 300), now + ttl, arn, kind)
            self.by_key[cred.key_id] = cred
        return cred

    def expire(self, now, key_id=None):
        """Temporary credentials (all, or one) expire now; returns how many."""
        with self.lock:
            hit = [c for c in self.by_key.values()
                   if c.expires is not None and (key_id is None or c.key_id == key_id)]
            for c in hit:
                c.expires = now - 0.001
            return len(hit)

    def reset(self):
        """Drops issued credentials; static ones stay."""
        with self.lock:
            self.by_key = {c.key_id: c for c in self.static}

    def lookup(self, key_id, token, now):
        with self.lock:
            cred = self.by_key.get(key_id)
        if cred is None:
            raise AuthError("unknown_key", MSG_BAD_TOKEN)
        if (cred.token is None) != (token is None) or \
                (token is not None and not hmac.compare_digest(cred.token.encode(), token.encode())):
            raise AuthError("bad_token", MSG_BAD_TOKEN)
        if cred.expires is not None and now >= cred.expires:
            raise AuthError("expired_token", MSG_EXPIRED_TOKEN)
        return cred.secret, Identity(cred.key_id, cred.arn, cred.expires is not None)
