"""pytest fixtures for tests/host (helpers live in kms_host_helpers.py):
the binary must be built, and on the PostgreSQL pass (KMS_TEST_STORE=
postgresql) one server per session and a fresh database per test."""

import os
import subprocess
import uuid

import pytest

import kms_host_helpers as H
from pg_fixture import PostgresServer  # tests/support, on sys.path through H


# test_host_teams.py has its own ctest entries (host_teams, host_teams_pg,
# which set KMS_TEST_TEAMS=1): host_e2e and host_e2e_pg leave it out.
collect_ignore = [] if os.environ.get("KMS_TEST_TEAMS") == "1" else ["test_host_teams.py"]


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: about the SQLite file; not on the "
                            "postgresql pass")
    config.addinivalue_line("markers", "postgresql_only: needs the PostgreSQL store; only on "
                            "the postgresql pass")


def pytest_collection_modifyitems(config, items):
    # Deselected (not skipped): each runs in the ctest entry of its store.
    other = "postgresql_only" if H.STORE == "sqlite" else "sqlite_only"
    keep = [i for i in items if other not in i.keywords]
    gone = [i for i in items if other in i.keywords]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _need_binary():
    H.require_binary()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """The session's PostgreSQL (a missing postgresql-15 is an error)."""
    if H.STORE != "postgresql":
        pytest.fail("a PostgreSQL test ran on the sqlite pass (mark it postgresql_only)")
    srv = PostgresServer(str(tmp_path_factory.mktemp("pg"))).start()
    H.PG["server"] = srv
    yield srv
    srv.cleanup()


@pytest.fixture(autouse=True)
def _store(request, monkeypatch):
    """On the postgresql pass: a fresh database for this test in DATABASE_URL."""
    if H.STORE != "postgresql":
        monkeypatch.delenv("DATABASE_URL", raising=False)
        yield None
        return
    srv = request.getfixturevalue("pg_server")
    name = "t_" + uuid.uuid4().hex[:16]
    monkeypatch.setenv("DATABASE_URL", srv.create_database(name))
    H.PG["db"] = name
    yield name
    H.PG["db"] = None


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """TLS material for tests/vault_server."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(H.MAKE_CERTS), str(d)], check=True, capture_output=True)
    return d


@pytest.fixture
def vault(tmp_path, certs):
    """A fresh Vault-compatible server over TLS for this test."""
    v = H.VaultServer(tmp_path, certs).start()
    yield v
    v.stop()
