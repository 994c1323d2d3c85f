"""Vault's side of the HTTP seam (testserver.core.Protocol): which requests
are API requests (/v1/...), how errors look ({"errors": [...]}), how tokens
are redacted in the request log, and the path handling Go's net/http does
before Vault routes a request (percent-decoding, 301 to the cleaned path),
then the sealed/standby gates.

Thread safety: VaultProtocol holds no state of its own; Vault locks its own.
"""

import re
import urllib.parse

from testserver.controls import bearer_redact, sha256_redact
from testserver.core import Protocol, Response

from . import controls
from .api import Req
from .convert import go_clean_path

# sys endpoints a sealed server, or a standby, still answers itself
SEALED_OK = ("sys/health", "sys/seal-status", "sys/init")
STANDBY_OK = ("sys/health", "sys/seal-status", "sys/leader", "sys/init")


class VaultProtocol(Protocol):
    name = "vault_server"
    body_too_large = ["failed to parse JSON input: http: request body too large"]

    def __init__(self, vault):
        self.vault = vault

    def error(self, status, messages, headers=None, code=None):
        return Response(status, {"errors": list(messages)}, headers)

    def internal_error(self):
        return Response(500, {"errors": ["1 error occurred:\n\t* internal error\n\n"]})

    def accepts(self, ex):
        return ex.raw_path.startswith("/v1/") or ex.raw_path == "/v1"

    def redact(self, name, value):
        if name == "x-vault-token":
            return sha256_redact(value)
        if name == "authorization":
            return bearer_redact(value)
        return value

    def control(self, method, path, data):
        return controls.control(self.vault, method, path, data)

    def handle(self, ex):
        try:
            return self._handle(ex)
        except RecursionError:
            return Response(400, {"errors": ["failed to parse JSON input: exceeded max depth"]})

    def _handle(self, ex):
        # Go decodes %XX (including %2F) before routing, then ServeMux
        # redirects non-canonical paths (.., ., //) to the cleaned path.
        raw_path, raw_query = ex.raw_path, ex.raw_query
        try:
            path = urllib.parse.unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            path = urllib.parse.unquote(raw_path, errors="surrogateescape")
        if re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
            ex.close = True
            return Response(400, {"errors": ["invalid URL escape"]})
        clean = go_clean_path(path)
        if clean != path:
            return self._redirect_clean(ex.method, clean, raw_query)
        rel = path[len("/v1/"):] if path.startswith("/v1/") else ""
        vault = self.vault
        with vault.lock:
            sealed = vault.sealed
            standby = vault.standby
        if sealed and rel not in SEALED_OK:
            return Response(503, {"errors": ["Vault is sealed"]})
        if standby is not None and rel not in STANDBY_OK:
            loc = standby[0].rstrip("/") + raw_path + ("?" + raw_query if raw_query else "")
            return Response(standby[1], headers={"Location": loc}, raw=b"")
        if ex.method == "HEAD" and rel != "sys/health":
            return Response(405, {"errors": []})
        return vault.handle(Req.from_exchange(ex, rel))

    @staticmethod
    def _redirect_clean(method, clean, raw_query):
        loc = urllib.parse.quote(clean, safe="/:@!$&'()*+,;=-._~")
        if raw_query:
            loc += "?" + raw_query
        html = '<a href="%s">Moved Permanently</a>.\n\n' % loc
        return Response(301, headers={"Location": loc},
                        raw=html.encode() if method in ("GET", "HEAD") else b"",
                        content_type="text/html; charset=utf-8")

