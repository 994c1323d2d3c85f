"""The HTTP/1.1 layer every test server shares.

A threaded server (one thread per connection, keep-alive, TLS handshake in
that thread so one slow client never blocks accept), request bodies with
limits (Content-Length, chunked, Expect: 100-continue -> 413), the
/__test__/ controls, the request log and fault injection.  What a request
means, and how errors look, is the Protocol's business (core.py).

Thread safety: the handler's fields belong to its connection thread; shared
state is in Controls (locked) and in the Protocol (which locks its own).
"""

import http
import http.server
import json
import socket
import socketserver
import ssl
import sys
import time
import traceback
import urllib.parse

from .core import Exchange, ProtocolError
from .x509 import X509

IDLE_TIMEOUT = 300                # seconds a keep-alive connection may idle

STATUS_TEXT = dict((s.value, s.phrase) for s in http.HTTPStatus)
STATUS_TEXT.update({429: "Too Many Requests", 472: "Data Protection Sealed"})


class _Drop(Exception):
    """Close the connection without answering (a "drop" fault)."""


class ThreadedServer(http.server.ThreadingHTTPServer):
    """Listens on (host, port); IPv6 when host has a colon."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, addr, protocol, controls, ssl_ctx, args):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.protocol = protocol
        self.controls = controls
        self.ssl_ctx = ssl_ctx
        self.args = args
        super().__init__(addr, Handler)

    def server_bind(self):
        # skip HTTPServer's getfqdn(): it can block on DNS for seconds
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        if self.args.verbose:
            traceback.print_exc(file=sys.stderr)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    # -- connection setup (TLS handshake happens here, in the worker thread)
    def setup(self):
        srv = self.server
        self.server_version = srv.protocol.name
        self.conn_id = srv.controls.new_connection()
        self.peer_der = None
        self.peer_subject = None
        self.is_tls = False
        if srv.ssl_ctx is not None:
            self._tls_handshake(srv)
        super().setup()

    def _tls_handshake(self, srv):
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
        srv.controls.tls_handshake()
        try:
            self.peer_der = tls.getpeercert(binary_form=True)
        except (ValueError, ssl.SSLError):
            self.peer_der = None
        if self.peer_der:
            try:
                self.peer_subject = X509(self.peer_der).subject_str()
            except Exception:
                self.peer_subject = None

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

    # -- writing
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

    def send(self, resp, head=False):
        if resp.raw is not None:
            self._write(resp.status, resp.raw, resp.headers, resp.content_type, head=head)
        else:
            self.send_json(resp.status, resp.body, resp.headers, head=head)

    def send_protocol_error(self, status, messages, headers=None):
        self.send(self.server.protocol.error(status, messages, headers))

    def send_error(self, code, message=None, explain=None):
        """Used by BaseHTTPRequestHandler for malformed requests."""
        self.close_connection = True
        try:
            self.send_protocol_error(code, [message] if message else [])
        except OSError:
            pass

    def handle_expect_100(self):
        cl = self.headers.get("Content-Length")
        if cl and cl.strip().isdigit() and int(cl) > self.server.args.max_request_bytes:
            self.close_connection = True
            self.send_protocol_error(413, self.server.protocol.body_too_large)
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

    def _too_large(self):
        self.close_connection = True
        return ProtocolError(413, self.server.protocol.body_too_large)

    def _read_chunked(self, limit):
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
                raise ProtocolError(400, ["malformed chunked encoding"])
            if size == 0:
                while True:  # trailers
                    tl = self.rfile.readline(65537)
                    if tl in (b"\r\n", b"\n", b""):
                        break
                return b"".join(chunks)
            total += size
            if total > limit:
                raise self._too_large()
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def read_body(self):
        """The body bytes, or ProtocolError (413, 400, 501)."""
        limit = self.server.args.max_request_bytes
        te = self.headers.get("Transfer-Encoding", "")
        if te and te.strip().lower() != "identity":
            if "chunked" not in te.lower():
                self.close_connection = True
                raise ProtocolError(501, ["unsupported transfer encoding"])
            return self._read_chunked(limit)
        cl = self.headers.get("Content-Length")
        if cl is None or cl.strip() == "":
            return b""
        try:
            n = int(cl.strip())
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ProtocolError(400, ["invalid Content-Length"])
        if n > limit:
            if n <= max(4 * limit, 64 << 20):
                # Drain the body so the client finishes sending and reads the 413
                # instead of hitting a connection reset.
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise self._too_large()
        body = self.rfile.read(n)
        if len(body) < n:
            raise ConnectionError("short body")
        return body

    # -- one request
    def dispatch(self):
        srv = self.server
        method = self.command.upper()
        target = self.path
        if target.startswith("http://") or target.startswith("https://"):
            parts = urllib.parse.urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        ex = Exchange(method, target, self.headers, self)
        if srv.args.test_controls and (ex.raw_path.startswith("/__test__/") or ex.raw_path == "/__test__"):
            self.test_control(ex)
            return
        try:
            ex.body = self.read_body()
        except ProtocolError as e:
            self.send_protocol_error(e.status, e.messages, e.headers)
            return
        if not srv.protocol.accepts(ex):
            self.send_protocol_error(404, [])
            return
        srv.controls.record(ex, srv.protocol)
        if srv.controls.faults and self.apply_fault(ex):
            return
        resp = self.answer(ex)
        if ex.close:
            self.close_connection = True
        self.send(resp, head=method == "HEAD")

    def answer(self, ex):
        proto = self.server.protocol
        try:
            return proto.handle(ex)
        except ProtocolError as e:
            return proto.error(e.status, e.messages, e.headers, e.code)
        except Exception:  # never leak a traceback to a client
            if self.server.args.verbose:
                traceback.print_exc()
            return proto.internal_error()

    def apply_fault(self, ex):
        """Applies the first matching fault; True when it answered (or dropped)."""
        fault = self.server.controls.take_fault(ex.method, ex.raw_path, ex.headers)
        if fault is None:
            return False
        if fault.delay_ms > 0:
            time.sleep(fault.delay_ms / 1000.0)
        if fault.drop:
            raise _Drop()
        if not fault.status:
            return False
        hdrs = {str(k): str(v) for k, v in fault.headers.items()}
        head = ex.method == "HEAD"
        if fault.raw_body is not None:
            ctype = hdrs.pop("Content-Type", "text/plain; charset=utf-8")
            self._write(fault.status, str(fault.raw_body).encode("utf-8"), hdrs, ctype, head=head)
        elif fault.body is not None:
            ctype = hdrs.pop("Content-Type", "application/json")
            self._write(fault.status, (json.dumps(fault.body) + "\n").encode("utf-8"), hdrs, ctype, head=head)
        else:   # the protocol's own error shape (with the fault's code and message, if any)
            resp = self.server.protocol.error(fault.status, [fault.message] if fault.message else [],
                                              code=fault.code)
            resp.headers = dict(resp.headers, **hdrs)
            self.send(resp, head=head)
        return True

    def test_control(self, ex):
        srv = self.server
        try:
            body = self.read_body()
            self.send_json(200, srv.controls.handle(ex.method, ex.raw_path, body, srv.protocol))
        except ProtocolError as e:
            self.send_json(e.status, {"errors": e.messages}, e.headers)
        except (ConnectionError, OSError):
            raise
        except Exception as e:  # never leak a traceback
            if srv.args.verbose:
                traceback.print_exc()
            self.send_json(500, {"errors": ["internal error: %s" % type(e).__name__]})
