"""Replicas (issue 17): three `kms-host serve` processes on one PostgreSQL
database (tests/support/pg_fixture.py) behind a "load balancer" (each client
request goes to a random replica), with the Vault-compatible server sealed
and unsealed, answering 503 and dropping connections (test_serve_load.py's
chaos), one replica killed with SIGKILL every few seconds and started again,
and PostgreSQL restarted once mid-run. Afterwards (once the survivors'
workers have drained the outbox, bounded wait) Vault's contents equal the
key table, every key a client was told exists exists with its hash, every
key a client was told is deleted is gone, and a key nobody was told about
comes only from a request whose reply was lost to a kill. Each alias is
written once and deleted at most once, so a lost, duplicated or reordered
secret operation shows up as a difference between Vault and the table.

The issue asks for 50 clients; on the CI machine (2 shared cores, Python
Vault stand-in) the default is 12 clients x 15 s:
  KMS_SERVE_REPLICA_CLIENTS=50 KMS_SERVE_REPLICA_SECONDS=30 ctest -R host_serve
A missing postgresql-15 fails (pg_fixture raises), it never skips.
"""

import hashlib
import http.client
import os
import random
import signal
import socket
import threading
import time
import urllib.error

import pytest

from pg_fixture import PostgresServer  # tests/support (on sys.path via kms_host_helpers)
from serve_helpers import Serve, wait_until, write_config
from test_serve_load import chaos

CLIENTS = int(os.environ.get("KMS_SERVE_REPLICA_CLIENTS", "12"))
SECONDS = float(os.environ.get("KMS_SERVE_REPLICA_SECONDS", "15"))
REPLICAS = 3
KILL_EVERY = 3.0  # seconds between SIGKILLs
LOST = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
        TimeoutError)


@pytest.fixture
def pg(tmp_path):
    srv = PostgresServer(str(tmp_path)).start()
    yield srv
    srv.cleanup()


class Cluster:
    """REPLICAS serve processes on one database; kill() / revive() by slot."""

    def __init__(self, tmp_path, env):
        self.tmp, self.env, self.lock, self.gen = tmp_path, env, threading.Lock(), 0
        self.slots = [self._start() for _ in range(REPLICAS)]
        self.retired = []

    def _start(self):
        # Starting needs Vault unsealed and PostgreSQL up (serve refuses to
        # start otherwise): retry within a bound while the faults go on.
        end = time.monotonic() + 60
        while True:
            self.gen += 1
            d = self.tmp / f"replica{self.gen}"
            d.mkdir()
            try:
                return Serve(write_config(d), self.env,
                             args=("--threads", "4", "--deliver-wait-ms", "1000"))
            except AssertionError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)

    def pick(self):
        with self.lock:
            return random.choice(self.slots)

    def kill_and_revive(self, i):
        with self.lock:
            victim = self.slots[i]
        assert victim.stop(sig=signal.SIGKILL) == -signal.SIGKILL
        self.retired.append(victim)
        fresh = self._start()
        with self.lock:
            self.slots[i] = fresh

    def stop(self):
        return [s.stop() for s in self.slots]


class Record:
    """What the clients were told (and what they were not)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live, self.deleted, self.unknown, self.errors = {}, set(), set(), []
        self.delivery = {}  # kms_host.secret_manager of each generate: landed / queued


def call(cluster, rec, req):
    try:
        return cluster.pick().call(*req, timeout=30)
    except LOST:
        return None, None  # the replica died under the request: outcome unknown


def client(cluster, rec, n, stop):
    i, mine = 0, {}
    while not stop.is_set():
        alias = f"rep/c{n}/k{i}"
        i += 1
        st, body = call(cluster, rec, ("POST", "/key/generate", {"key_alias": alias}))
        if st == 200:
            mine[alias] = body["key"]
            how = body["kms_host"]["secret_manager"]
            with rec.lock:
                rec.delivery[how] = rec.delivery.get(how, 0) + 1
        else:
            with rec.lock:
                rec.unknown.add(alias)
                if st is not None and st < 500:
                    rec.errors.append(("generate", st, body))
        if i % 3 == 0 and mine:  # delete two of every three: by key, then by alias
            victim = next(iter(mine))
            req = {"keys": [mine[victim]]} if i % 2 else {"key_aliases": [victim]}
            st, body = call(cluster, rec, ("POST", "/key/delete", req))
            with rec.lock:
                if st == 200:
                    rec.deleted.add(victim)
                else:
                    rec.unknown.add(victim)
                    if st is not None and st < 500:
                        rec.errors.append(("delete", st, body))
            del mine[victim]
    with rec.lock:
        rec.live.update(mine)


def killer(cluster, pg, stop, stats):
    """SIGKILL a random replica every KILL_EVERY s and start it again;
    restart PostgreSQL once, half-way."""
    start = time.monotonic()
    try:
        while not stop.wait(KILL_EVERY):
            cluster.kill_and_revive(random.randrange(REPLICAS))
            stats["kills"] += 1
            if not stats["pg_restarts"] and time.monotonic() - start > SECONDS / 2:
                pg.restart()  # same port and data; the replicas reconnect
                stats["pg_restarts"] += 1
    except Exception as e:  # a replica that would not start again fails the test
        stats["failure"] = repr(e)


def table(pg, db):
    keys = pg.psql("SELECT secret_name, token_hash FROM kms_host_virtual_keys", db=db)
    queued = int(pg.psql("SELECT count(*) FROM kms_host_outbox", db=db)[0][0])
    return dict(keys), queued


def test_three_replicas_sigkill_and_pg_restart_end_consistent(tmp_path, vault, pg):
    db = "replicas"
    url = pg.create_database(db)
    cluster = Cluster(tmp_path, vault.plugin_env(DATABASE_URL=url))
    stop, rec, stats = threading.Event(), Record(), {"kills": 0, "pg_restarts": 0}
    threads = [threading.Thread(target=client, args=(cluster, rec, n, stop))
               for n in range(CLIENTS)]
    threads += [threading.Thread(target=chaos, args=(vault, stop)),
                threading.Thread(target=killer, args=(cluster, pg, stop, stats))]
    try:
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(180)
        assert not any(t.is_alive() for t in threads)
        assert "failure" not in stats and stats["kills"] >= 2 and stats["pg_restarts"] == 1, \
            stats
        assert rec.errors == [], rec.errors[:5]
        # The faults happened: some changes were queued, some landed at once.
        assert rec.delivery.get("queued", 0) > 0 and rec.delivery.get("landed", 0) > 0, \
            rec.delivery
        # The survivors' workers drain the outbox (a killed replica's claims
        # lapse when its connection ends).
        assert wait_until(lambda: table(pg, db)[1] == 0, timeout=180), table(pg, db)[1]
        keys, _ = table(pg, db)
        told = {f"litellm/{a}": hashlib.sha256(k.encode()).hexdigest()
                for a, k in rec.live.items()}
        for name, h in told.items():  # every key a client was told exists, exists
            assert keys.get(name) == h, name
        for alias in rec.deleted:
            assert f"litellm/{alias}" not in keys, alias
        unknown = {f"litellm/{a}" for a in rec.unknown}
        assert set(keys) - set(told) <= unknown, sorted(set(keys) - set(told) - unknown)[:5]
        names = vault.live_names("litellm/rep/")
        assert names == sorted(keys)  # no orphan, nothing lost
        for name in names:
            assert hashlib.sha256(vault.read(name).encode()).hexdigest() == keys[name]
    finally:
        stop.set()
        codes = cluster.stop()
    assert codes == [0] * REPLICAS, [s.stderr()[-2000:] for s in cluster.slots]
    print(f"replicas: {REPLICAS} x serve, {CLIENTS} clients x {SECONDS:g} s, "
          f"{stats['kills']} SIGKILLs, {stats['pg_restarts']} PostgreSQL restart: "
          f"{len(keys)} live keys, {len(rec.deleted)} deleted, {len(rec.unknown)} unknown, "
          f"{rec.delivery}")
