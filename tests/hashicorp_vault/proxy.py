#!/usr/bin/env python3
"""proxy.py -- a tiny recording HTTP proxy for test_vault_proxy.c.

Forwards absolute-URI requests (GET http://host:port/path ...) and tunnels
CONNECT, after writing one JSON line per request to --log:
  {"method": ..., "target": ..., "token": true/false}
(`token`: an X-Vault-Token header was present; its value is never written).
--map HOST=IP sends connections for HOST to IP (test host names that do not
resolve). Writes its port to --ready-file once listening; exits when its
parent does (--exit-with-parent) or on SIGTERM.
"""
import argparse
import json
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.parse


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(socketserver.StreamRequestHandler):
    def record(self, method, target, headers):
        line = json.dumps({"method": method, "target": target,
                           "token": any(k.lower() == "x-vault-token" for k, _ in headers)})
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(line + "\n")

    def connect_to(self, host, port):
        host = self.server.map.get(host.lower(), host)
        return socket.create_connection((host, port), timeout=10)

    def handle(self):
        while True:
            first = self.rfile.readline(65537)
            if not first:
                return
            try:
                method, target, version = first.decode("latin-1").split()
            except ValueError:
                return
            headers = []
            while True:
                line = self.rfile.readline(65537)
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            self.record(method, target, headers)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up = self.connect_to(host.strip("[]"), int(port))
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                t = threading.Thread(target=pipe, args=(up, self.connection), daemon=True)
                t.start()
                pipe(self.connection, up)
                t.join()
                return
            u = urllib.parse.urlsplit(target)
            length = 0
            for k, v in headers:
                if k.lower() == "content-length":
                    length = int(v)
            body = self.rfile.read(length) if length else b""
            up = self.connect_to(u.hostname, u.port or 80)
            path = u.path + ("?" + u.query if u.query else "")
            out = ["%s %s HTTP/1.1" % (method, path)]
            out += ["%s: %s" % (k, v) for k, v in headers
                    if k.lower() not in ("proxy-connection", "connection")]
            out.append("Connection: close")
            up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            resp = b""
            while True:
                d = up.recv(65536)
                if not d:
                    break
                resp += d
            up.close()
            head, _, rest = resp.partition(b"\r\n\r\n")
            lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
            lines.append(b"Connection: close")
            self.wfile.write(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
            self.wfile.flush()
            return


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--map", action="append", default=[])
    ap.add_argument("--exit-with-parent", action="store_true")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    srv.map = dict(m.lower().split("=", 1) for m in a.map)
    open(a.log, "w").close()
    tmp = a.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, a.ready_file)
    if a.exit_with_parent:
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
