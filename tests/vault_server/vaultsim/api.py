"""Vault's request and response conventions: the parsed request (Req), the
route a request resolves to, JSON bodies as Vault parses them, and the
response envelope.

Thread safety: a Req belongs to one request; the rest is stateless.
"""

import json
import urllib.parse

from testserver.core import Response

from .base import bad
from .convert import new_uuid


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

    @classmethod
    def from_exchange(cls, ex, rel):
        """The request an HTTP exchange carries; rel is the decoded path after /v1/."""
        req = cls()
        req.method = ex.method
        req.raw_path = ex.raw_path
        req.path = rel
        req.raw_query = ex.raw_query
        req.query = urllib.parse.parse_qs(ex.raw_query, keep_blank_values=True)
        req.headers = ex.headers
        req.body = ex.body
        req.peer_der = ex.peer_der
        req.is_tls = ex.is_tls
        return req

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
