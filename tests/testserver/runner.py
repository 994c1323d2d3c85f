"""The process side every test server shares: command line, TLS context,
ready/pid files, signals, and the serve loop.

A server's entry point builds an argparse parser, adds its own options after
add_common_args(), and calls serve(protocol, args).  See
tests/vault_server/README.md for the options.
"""

import os
import signal
import ssl
import threading

from .controls import Controls
from .httpserver import ThreadedServer


def add_common_args(ap):
    """Options every test server takes (listen, TLS, controls, limits, lifetime)."""
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--pid-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--test-controls", action="store_true")
    ap.add_argument("--max-request-bytes", type=int, default=32 * 1024 * 1024)
    ap.add_argument("--max-log-entries", type=int, default=20000)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started the server exits (test fixtures "
                         "that crash or are killed then leave no server behind)")


def check_common_args(ap, args):
    """Refuses option combinations that cannot work (argparse exits with status 2)."""
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert/--tls-key")


def build_ssl_context(args):
    """TLS >= 1.2; with --client-ca a client certificate is requested, not required."""
    if not args.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.tls_cert, args.tls_key or None)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def write_atomic(path, text):
    """Writes text so that a reader sees all of it or nothing (tmp + rename)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def serve(protocol, args):
    """Serves until SIGTERM/SIGINT (or the parent exits, with --exit-with-parent); returns 0."""
    ssl_ctx = build_ssl_context(args)
    srv = ThreadedServer((args.host, args.port), protocol, Controls(args.max_log_entries), ssl_ctx, args)
    port = srv.server_address[1]
    host = "[%s]" % args.host if ":" in args.host else args.host
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
    print("%s listening on %s" % (protocol.name, url), flush=True)
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
