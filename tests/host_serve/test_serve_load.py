"""Load: many concurrent clients generating and deleting keys through
`kms-host serve` for a bounded time while the Vault-compatible server is
sealed and unsealed, answers 503 and drops connections. Afterwards (once the
worker has drained the outbox) Vault's contents equal the key table and the
clients' own record: no lost, duplicated or orphaned secret-manager
operation.

The issue asks for 50 clients x 30 s. On the CI machine (2 shared cores,
the Vault stand-in is Python) the default is 16 clients x 10 s;
KMS_SERVE_LOAD_CLIENTS / KMS_SERVE_LOAD_SECONDS run the full size:
  KMS_SERVE_LOAD_CLIENTS=50 KMS_SERVE_LOAD_SECONDS=30 ctest -R host_serve
"""

import hashlib
import os
import threading
import time

from serve_helpers import Serve, key_table, wait_until, write_config

CLIENTS = int(os.environ.get("KMS_SERVE_LOAD_CLIENTS", "16"))
SECONDS = float(os.environ.get("KMS_SERVE_LOAD_SECONDS", "10"))


def client(serve, n, stop, live, errors, counts):
    i = 0
    mine = {}
    while not stop.is_set():
        alias = f"load/c{n}/k{i}"
        i += 1
        st, body = serve.call("POST", "/key/generate", {"key_alias": alias})
        if st != 200:
            errors.append(("generate", st, body))
            continue
        mine[alias] = body["key"]
        counts[body["kms_host"]["secret_manager"]] = counts.get(
            body["kms_host"]["secret_manager"], 0) + 1
        if i % 3 == 0:  # delete two of every three: by key, then by alias
            victim = next(iter(mine))
            req = {"keys": [mine[victim]]} if i % 2 else {"key_aliases": [victim]}
            st, body = serve.call("POST", "/key/delete", req)
            if st != 200:
                errors.append(("delete", st, body))
                continue
            del mine[victim]
    live.update(mine)


def chaos(vault, stop):
    """Seal/unseal, 503s and dropped connections until stopped."""
    n = 0
    while not stop.wait(0.4):
        n += 1
        if n % 4 == 1:
            vault.seal(True)
        elif n % 4 == 2:
            vault.seal(False)
        elif n % 4 == 3:
            vault.request("POST", "/__test__/faults", {"path": "^/v1/secret/data/", "status": 503,
                                                       "body": {"errors": ["injected"]},
                                                       "times": 5})
        else:
            vault.request("POST", "/__test__/faults", {"path": "^/v1/secret/", "drop": True,
                                                       "times": 2})
    vault.request("DELETE", "/__test__/faults")
    vault.seal(False)


def test_concurrent_clients_with_faults_end_consistent(tmp_path, vault):
    s = Serve(write_config(tmp_path), vault.plugin_env(), args=("--threads", "8",
                                                               "--deliver-wait-ms", "2000"))
    stop = threading.Event()
    live, errors, counts = {}, [], {}
    threads = [threading.Thread(target=client, args=(s, n, stop, live, errors, counts))
               for n in range(CLIENTS)]
    threads.append(threading.Thread(target=chaos, args=(vault, stop)))
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors[:5]
    # The faults happened: some changes were queued, and some landed at once.
    assert counts.get("queued", 0) > 0 and counts.get("landed", 0) > 0, counts
    db = tmp_path / "kms-host.db"
    assert wait_until(lambda: key_table(db)[1] == [], timeout=120), key_table(db)[1][:5]
    keys, _ = key_table(db)
    want = {f"litellm/{a}": hashlib.sha256(k.encode()).hexdigest() for a, k in live.items()}
    assert keys == want  # the database equals what the clients were told
    names = vault.live_names("litellm/load/")
    assert names == sorted(want)  # no orphan, nothing lost
    for name in names:
        assert hashlib.sha256(vault.read(name).encode()).hexdigest() == want[name]
    assert s.stop() == 0
    print(f"load: {CLIENTS} clients x {SECONDS:g} s: {len(live)} live keys, {counts}")
