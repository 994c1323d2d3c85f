"""Fixtures for the AWS test-server suites.

Servers run as subprocesses of Debian's /usr/bin/python3 on free loopback
ports (testserver.launcher); every server started here is stopped with
SIGTERM at the end of its scope and must exit with status 0.
"""

import os
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]   # aws_test_helpers, then tests/ for testserver

from testserver.launcher import ServerProcess  # noqa: E402
from aws_test_helpers import KEY_ID, REGION, SECRET_KEY, WEB_TOKEN, AwsServer  # noqa: E402

SERVER = os.path.join(HERE, "server.py")
MAKE_CERTS = os.path.join(os.path.dirname(HERE), "vault_server", "make_certs.sh")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("aws_server"))


def _start(workdir, *extra):
    proc = ServerProcess(SERVER, ["--test-controls", "--region", REGION, "--access-key-id", KEY_ID,
                                  "--secret-access-key", SECRET_KEY, "--web-identity-token", WEB_TOKEN]
                         + list(extra), workdir)
    proc.start()
    return proc


@pytest.fixture(scope="session")
def server_proc(workdir):
    proc = _start(os.path.join(workdir, "shared"))
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def aws(server_proc):
    """The shared server, its faults, denials and clock cleared around each test."""
    srv = AwsServer(server_proc.url)
    srv.clean()
    yield srv
    srv.clean()


@pytest.fixture(scope="session")
def certs(workdir):
    """The Vault server's throwaway PKI (make_certs.sh serves every test server)."""
    out = os.path.join(workdir, "certs")
    subprocess.run(["bash", MAKE_CERTS, out], check=True, stdout=subprocess.DEVNULL)
    return {name: os.path.join(out, name) for name in os.listdir(out)}


@pytest.fixture
def start_server(workdir, certs):
    """Factory for a private server (extra command-line options, tls=True for HTTPS); stopped after the test."""
    started = []

    def start(*extra, tls=False):
        if tls:
            extra = ("--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"]) + extra
        proc = _start(os.path.join(workdir, "private"), *extra)
        started.append(proc)
        return AwsServer(proc.url, certs["ca.pem"] if tls else None), proc
    yield start
    assert [p.stop() for p in started] == [0] * len(started), "a private server did not exit cleanly"


@pytest.fixture
def uniq():
    return "kms-test/" + uuid.uuid4().hex[:12]
