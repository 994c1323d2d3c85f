"""Test controls shared by every test server: faults, request log, counters.

Served under /__test__/ (a path no real API uses) when --test-controls is on.
Requests to them are neither logged nor counted.  A Protocol adds its own
endpoints (Vault: seal, standby, tokens) through Protocol.control.

Thread safety: Controls.lock guards every field; the HTTP layer's
connection threads call in concurrently.
"""

import hashlib
import json
import re
import threading
import time

from .core import ProtocolError

LOG_BODY_MAX = 64 * 1024          # request-log body bytes kept per entry


def _bad(msg):
    return ProtocolError(400, [msg])


def int_field(spec, key, default):
    """An integer from a control request (JSON number or decimal string)."""
    v = spec.get(key, default)
    if isinstance(v, bool):
        raise _bad('"%s" must be an integer, got %s' % (key, json.dumps(v)))
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?[0-9]+\s*", v):
        return int(v)
    raise _bad('"%s" must be an integer, got %s' % (key, json.dumps(v)))


def bool_field(spec, key, default):
    """A boolean from a control request (true/false, 0/1, "true"/"false")."""
    v = spec.get(key, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str) and v.strip().lower() in ("1", "t", "true", "0", "f", "false", ""):
        return v.strip().lower() in ("1", "t", "true")
    raise _bad('"%s" must be a boolean, got %s' % (key, json.dumps(v)))


def parse_control_body(body):
    """A control request's JSON object ({} when empty)."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad("invalid JSON: %s" % e)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad("a JSON object is required")
    return data


def sha256_redact(value):
    """How a secret header value is logged: sha256:<hex>, never the value."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def bearer_redact(value):
    """An Authorization value with the credential hashed ("Bearer " kept)."""
    v = value.strip()
    if v[:7].lower() == "bearer ":
        return v[:7] + sha256_redact(v[7:].strip())
    return sha256_redact(v)


class Fault:
    """One injected fault (see the README's "Test controls")."""

    def __init__(self, fid, spec):
        self.id = fid
        self.spec = spec
        self.method = spec.get("method")
        if self.method is not None and not isinstance(self.method, str):
            raise _bad("method must be a string")
        self.path = spec.get("path")
        try:
            self.path_re = re.compile(self.path) if self.path else None
        except (re.error, TypeError) as e:
            raise _bad("invalid path regex: %s" % e)
        self.status = int_field(spec, "status", 0)
        self.code = spec.get("code")          # rendered by Protocol.error with message
        self.message = spec.get("message")
        if not isinstance(self.code, (str, type(None))) or not isinstance(self.message, (str, type(None))):
            raise _bad("code and message must be strings")
        self.match_headers = {}               # header name -> regex, all must match
        mh = spec.get("match_headers") or {}
        if not isinstance(mh, dict):
            raise _bad("match_headers must be an object")
        for name, rx in mh.items():
            try:
                self.match_headers[str(name)] = re.compile(rx)
            except (re.error, TypeError) as e:
                raise _bad("invalid match_headers regex for %s: %s" % (name, e))
        self.body = spec.get("body")
        self.raw_body = spec.get("raw_body")
        self.headers = spec.get("headers") or {}
        if not isinstance(self.headers, dict):
            raise _bad("headers must be an object")
        self.delay_ms = int_field(spec, "delay_ms", 0)
        self.drop = bool_field(spec, "drop", False)
        self.times = int_field(spec, "times", 1)
        self.hits = 0

    def matches(self, method, path, headers=None):
        if self.times == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_re is not None and not self.path_re.search(path):
            return False
        for name, rx in self.match_headers.items():
            value = headers.get(name) if headers is not None else None
            if value is None or not rx.search(value):
                return False
        return True

    def describe(self):
        d = dict(self.spec)
        d.update({"id": self.id, "times": self.times, "hits": self.hits})
        return d


class Controls:
    """Faults, the request log and the counters of one server process."""

    def __init__(self, max_log):
        self.lock = threading.Lock()
        self.faults = []
        self.fault_seq = 0
        self.log = []
        self.log_seq = 0
        self.max_log = max_log
        self.stats = {"connections": 0, "tls_handshakes": 0, "requests": 0}
        self.conn_seq = 0

    # -- called by the HTTP layer

    def new_connection(self):
        """Counts a connection; returns its id."""
        with self.lock:
            self.stats["connections"] += 1
            self.conn_seq += 1
            return self.conn_seq

    def tls_handshake(self):
        with self.lock:
            self.stats["tls_handshakes"] += 1

    def record(self, ex, protocol):
        """Counts an API request and appends it to the log (secrets redacted)."""
        hdrs = {}
        for k, v in ex.headers.items():
            v = protocol.redact(k.lower(), v)
            hdrs[k] = v if k not in hdrs else hdrs[k] + ", " + v
        body = protocol.redact_body(ex)
        text = body[:LOG_BODY_MAX].decode("utf-8", "replace")
        with self.lock:
            self.stats["requests"] += 1
            self.log_seq += 1
            entry = {"seq": self.log_seq, "time": time.time(), "method": ex.method,
                     "path": ex.raw_path, "query": ex.raw_query, "headers": hdrs, "body": text,
                     "client_cert_subject": ex.peer_subject, "connection_id": ex.conn_id,
                     "tls": ex.is_tls}
            if len(body) > LOG_BODY_MAX:
                entry["body_truncated"] = True
            self.log.append(entry)
            if len(self.log) > self.max_log:
                del self.log[:len(self.log) - self.max_log]

    def take_fault(self, method, path, headers=None):
        """The first matching fault (its count used up by one), or None."""
        with self.lock:
            for f in self.faults:
                if f.matches(method, path, headers):
                    f.hits += 1
                    if f.times > 0:
                        f.times -= 1
                    return f
        return None

    # -- the /__test__/ endpoints

    def handle(self, method, raw_path, body, protocol):
        """Answers one /__test__/ request: a JSON-able dict, or ProtocolError."""
        path = raw_path.rstrip("/")
        data = parse_control_body(body) if method in ("POST", "PUT") else {}
        if path == "/__test__/faults":
            return self._faults(method, data)
        if path.startswith("/__test__/faults/") and method == "DELETE":
            fid = path.rsplit("/", 1)[1]
            with self.lock:
                self.faults = [f for f in self.faults if str(f.id) != fid]
            return {"cleared": True}
        if path == "/__test__/requests":
            with self.lock:
                if method == "GET":
                    return {"requests": list(self.log)}
                if method == "DELETE":
                    self.log = []
                    return {"cleared": True}
        elif path == "/__test__/stats":
            with self.lock:
                if method == "GET":
                    return dict(self.stats)
                if method == "DELETE":
                    for k in self.stats:
                        self.stats[k] = 0
                    return {"cleared": True}
        elif path == "/__test__/health" and method == "GET":
            return {"ok": True}
        else:
            answer = protocol.control(method, path[len("/__test__/"):], data)
            if answer is not None:
                return answer
        raise ProtocolError(404, [])

    def _faults(self, method, data):
        with self.lock:
            if method in ("POST", "PUT"):
                self.fault_seq += 1
                f = Fault(self.fault_seq, data)
                self.faults.append(f)
                return {"id": f.id}
            if method == "GET":
                return {"faults": [f.describe() for f in self.faults]}
            if method == "DELETE":
                self.faults = []
                return {"cleared": True}
        raise ProtocolError(404, [])
