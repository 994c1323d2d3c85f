"""The interface between the shared HTTP layer and one protocol's server.

The HTTP layer (httpserver.py) parses requests, applies test controls and
faults, and writes responses; a Protocol decides what a request means and
how its errors look.  Everything here is plain data: no sockets, no threads.
"""


class ProtocolError(Exception):
    """An error the protocol renders itself (Protocol.error).

    status: HTTP status; messages: list of texts; headers: extra response
    headers; code: a protocol error code where the protocol has them (AWS's
    "__type"), else None."""

    def __init__(self, status, messages=None, headers=None, code=None):
        super().__init__(status, messages)
        self.status = status
        self.messages = [] if messages is None else list(messages)
        self.headers = headers or {}
        self.code = code


class Response:
    """One answer.  body (dict/list) is sent as JSON unless raw (bytes) is set."""
    __slots__ = ("status", "body", "headers", "raw", "content_type")

    def __init__(self, status=200, body=None, headers=None, raw=None,
                 content_type="application/json"):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw
        self.content_type = content_type


class Exchange:
    """Everything the HTTP layer knows about one request (one struct per request).

    headers is the case-insensitive message object of http.server; body is
    bytes (already de-chunked and size-checked).  A protocol sets close=True
    to close the connection after its answer."""
    __slots__ = ("method", "target", "raw_path", "raw_query", "headers", "body",
                 "peer_der", "peer_subject", "is_tls", "conn_id", "close")

    def __init__(self, method, target, headers, conn):
        self.method = method
        self.target = target
        self.raw_path, _, self.raw_query = target.partition("?")
        self.headers = headers
        self.body = b""
        self.peer_der = conn.peer_der
        self.peer_subject = conn.peer_subject
        self.is_tls = conn.is_tls
        self.conn_id = conn.conn_id
        self.close = False


class Protocol:
    """What a server implements; the defaults suit a JSON API.

    Thread safety: every method may be called from many connection threads at
    once; a protocol guards its own state (controls.py guards the shared one).
    """

    name = "testserver"                 # "<name> listening on URL"; Server: header
    body_too_large = ["request body too large"]

    def error(self, status, messages, headers=None, code=None):
        """Render an error: also used for 404s outside the API, 413s, bad request lines."""
        return Response(status, {"errors": list(messages)}, headers)

    def internal_error(self):
        """The 500 for an unexpected exception (never a traceback)."""
        return self.error(500, ["internal error"])

    def accepts(self, ex):
        """False: answered error(404), not logged, counted or faulted."""
        return True

    def redact(self, name, value):
        """A header value as the request log stores it (hash secrets)."""
        return value

    def redact_body(self, ex):
        """The request body (bytes) as the request log stores it (hide secret values)."""
        return ex.body

    def handle(self, ex):
        """Answer one request (an Exchange); may raise ProtocolError."""
        raise NotImplementedError

    def control(self, method, path, data):
        """A protocol's own /__test__/ endpoint: a JSON-able dict, or None if unknown."""
        return None
