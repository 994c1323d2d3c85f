"""testserver -- the protocol-independent half of kmsplug's test servers.

A test server (tests/vault_server, tests/aws_server) is a
`Protocol` object plugged into this package, which owns everything that is
the same for every protocol:

  core.py        Response, ProtocolError, Exchange (one request's state) and
                 the Protocol interface a server implements
  httpserver.py  threaded HTTP/1.1 keep-alive server, TLS handshake in the
                 worker thread, optional client certificates, body limits
                 (413, chunked bodies, Expect: 100-continue)
  controls.py    /__test__/ endpoints: fault injection (a fault may match
                 headers with "match_headers" and answer in the protocol's
                 error shape with "code"/"message"), request log (header
                 values and bodies redacted by the protocol: redact,
                 redact_body), connection/TLS/request counters; a protocol
                 adds its own endpoints through Protocol.control
  runner.py      the command line every server shares, ready/pid files,
                 SIGTERM/SIGINT, --exit-with-parent
  launcher.py    start/stop a server as a subprocess from pytest suites
  x509.py        just enough X.509/DER to name and verify client certificates

Standard library only; runs on Debian's /usr/bin/python3.  The seam is
described in tests/vault_server/README.md ("Layout").
"""
