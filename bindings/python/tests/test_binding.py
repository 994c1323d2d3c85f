"""The kmsplug binding on its own: every status, bytes with NULs, threads,
loading errors, the context manager, the host services (log, env). The ABI
1.1 calls have their own suite (test_abi11.py). Uses the purpose-built statusbox plugin
(tests/plugin/statusbox.c) and the real env plugin."""

import ctypes
import logging
import os
import shutil
import threading

import pytest

import kmsplug
from kmsplug import errors
from conftest import LIBRARY, PLUGIN_DIR, TEST_PLUGIN_DIR

STATUS_CLASSES = [
    (1, "NOT_FOUND", kmsplug.NotFoundError), (2, "INVALID_ARGUMENT", kmsplug.InvalidArgumentError),
    (3, "PERMISSION_DENIED", kmsplug.PermissionDeniedError),
    (4, "UNAUTHENTICATED", kmsplug.UnauthenticatedError), (5, "UNAVAILABLE", kmsplug.UnavailableError),
    (6, "CONFLICT", kmsplug.ConflictError), (7, "UNSUPPORTED", kmsplug.UnsupportedError),
    (8, "NO_MEMORY", kmsplug.NoMemoryError), (9, "INTERNAL", kmsplug.InternalError),
    (10, "BUFFER_TOO_SMALL", kmsplug.BufferTooSmallError)]


def box(name="statusbox", **settings):
    return kmsplug.open(name, settings, plugin_dir=TEST_PLUGIN_DIR)


def outstanding(c):
    return int(c.read_text("outstanding"))


@pytest.fixture
def client():
    c = box()
    yield c
    c.close()


# --- statuses -------------------------------------------------------------------------

@pytest.mark.parametrize("status,name,cls", STATUS_CLASSES)
def test_every_status_raises_its_class(client, status, name, cls):
    for call in (lambda: client.read(f"status/{status}"),
                 lambda: client.write(f"status/{status}", "v")):
        with pytest.raises(cls) as ei:
            call()
        e = ei.value
        assert isinstance(e, kmsplug.KmsError)
        assert (e.status, e.status_name, e.backend_status) == (status, name, 400 + status)
        assert e.message == "statusbox: status requested by name"
        assert str(e) == f"{name}: statusbox: status requested by name (backend status {400 + status})"
    assert outstanding(client) == 0


def test_status_classes_also_are_the_python_builtins_callers_expect():
    assert issubclass(kmsplug.InvalidArgumentError, ValueError)
    assert issubclass(kmsplug.PermissionDeniedError, PermissionError)
    assert issubclass(kmsplug.UnsupportedError, NotImplementedError)
    assert issubclass(kmsplug.NoMemoryError, MemoryError)
    assert {cls.status for _, _, cls in STATUS_CLASSES} == set(range(1, 11))


def test_unknown_status_is_internal_with_the_number_kept(client):
    with pytest.raises(kmsplug.InternalError) as ei:
        client.read("status/42")
    assert (ei.value.status, ei.value.status_name, ei.value.backend_status) == (42, "UNKNOWN", 442)
    assert "unknown status 42" in str(ei.value)


def test_status_names_match_the_loader():
    lib = kmsplug._lib.load()
    for number, name in errors.STATUS_NAMES.items():
        assert lib.status_name(number) == name


def test_check_and_set(client):
    client.write("cas", "one", cas=0)                  # only if absent
    with pytest.raises(kmsplug.ConflictError):
        client.write("cas", "two", cas=0)
    client.write("cas", "two", cas=1)
    assert client.read_secret("cas") == kmsplug.Secret(b"two", 2, False)


def test_delete_missing_is_ok_and_read_after_delete_is_not_found(client):
    client.write("gone", "x")
    client.delete("gone")
    client.delete("gone")
    with pytest.raises(kmsplug.NotFoundError):
        client.read("gone")


# --- values and names -----------------------------------------------------------------

def test_bytes_with_nuls_round_trip(client):
    raw = b"\x00a\x00b\xff\x00"
    client.write(b"bin", raw)
    assert client.read("bin") == raw
    assert client.read_secret(b"bin").value == raw
    with pytest.raises(UnicodeDecodeError):
        client.read_text("bin")
    client.write("text", "é\x00z")                      # str: UTF-8, NUL kept
    assert client.read_text("text") == "é\x00z"
    client.write("mv", memoryview(bytearray(b"x\x00y")))
    assert client.read("mv") == b"x\x00y"
    assert outstanding(client) == 0


@pytest.mark.parametrize("bad", ["a\x00b", b"\x00"])
def test_nul_in_a_name_or_setting_is_refused_before_c(client, bad):
    with pytest.raises(kmsplug.InvalidArgumentError, match="NUL byte at offset"):
        client.read(bad)
    with pytest.raises(kmsplug.InvalidArgumentError, match="NUL byte"):
        box(log=bad)


def test_wrong_types_and_empty_name(client):
    with pytest.raises(kmsplug.InvalidArgumentError, match="must be str or bytes, not int"):
        client.read(5)
    with pytest.raises(kmsplug.InvalidArgumentError, match="secret value must be str or bytes"):
        client.write("a", None)
    with pytest.raises(kmsplug.InvalidArgumentError, match="secret name is empty"):
        client.read("")


# --- threads ---------------------------------------------------------------------------

def run_threads(n, target):
    failures = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # noqa: B902 -- report everything
            failures.append(repr(e))

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [t for t in threads if t.is_alive()], "threads hung"
    return failures


def test_calls_run_in_parallel_outside_the_gil(client):
    """8 threads must all be inside the plugin at once for barrier/8 to
    release; if the binding held the GIL (or a lock) the barrier would time
    out with UNAVAILABLE."""
    got = []
    assert run_threads(8, lambda i: got.append(client.read_text("barrier/8"))) == []
    assert got == ["released"] * 8


def test_many_threads_mixed_operations(client):
    def work(i):
        for j in range(150):
            own = f"t{i}/k{j % 5}"
            client.write(own, f"{i}:{j}".encode() + b"\x00")
            assert client.read(own) == f"{i}:{j}".encode() + b"\x00"
            client.write("shared", str(j))
            assert client.read_text("shared").isdigit()
            if j % 7 == 0:
                client.delete(own)
            with pytest.raises(kmsplug.NotFoundError):
                client.read(f"t{i}/never")

    assert run_threads(16, work) == []
    assert outstanding(client) == 0


def test_plugin_without_thread_safe_capability_is_serialised():
    with box("statusbox_serial") as c:
        assert "thread-safe" not in c.module.capabilities

        def work(i):
            for j in range(60):
                c.write(f"k{i}", str(j))
                c.read(f"k{i}")

        assert run_threads(8, work) == []
        assert c.read_text("overlaps") == "0"


def test_close_waits_for_calls_in_flight_and_then_refuses_calls():
    c = box()
    opener = box()
    opener.read("gate/reset")
    reader = threading.Thread(target=lambda: results.append(c.read_text("gate/wait")))
    results = []
    reader.start()
    while c._inflight == 0:  # until the read is inside the plugin
        threading.Event().wait(0.001)
    closer = threading.Thread(target=c.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close() returned while a call was still inside the plugin"
    with pytest.raises(kmsplug.ClientClosedError):
        c.read("x")
    opener.read("gate/open")
    reader.join(20)
    closer.join(20)
    assert results == ["wait"] and not closer.is_alive()
    opener.read("gate/reset")
    opener.close()


# --- lifetime --------------------------------------------------------------------------

def test_context_manager_closes_and_calls_after_close_fail():
    with box() as c:
        c.write("a", "b")
        assert not c.closed
    assert c.closed
    with pytest.raises(kmsplug.ClientClosedError, match="statusbox"):
        c.read("a")
    c.close()  # idempotent


def test_module_context_manager_closes_its_clients():
    with kmsplug.Module("statusbox", TEST_PLUGIN_DIR) as m:
        assert (m.name, m.version, m.abi) == ("statusbox", "0.0.1-test", (1, 0))
        assert m.capabilities == ("read", "write", "delete", "refresh", "thread-safe")
        assert m.path == str(TEST_PLUGIN_DIR / "statusbox.so")
        c1, c2, c3 = m.client(), m.client(), kmsplug.Client(m)
        c1.write("x", "1")
        with pytest.raises(kmsplug.NotFoundError):
            c2.read("x")  # instances are independent
    assert c1.closed and c2.closed and c3.closed
    with pytest.raises(kmsplug.ClientClosedError):
        m.client()
    with pytest.raises(kmsplug.ClientClosedError):
        kmsplug.Client(m)


# --- loading errors --------------------------------------------------------------------

def test_loading_errors(trusted_tmp):
    with pytest.raises(kmsplug.InvalidArgumentError, match="Bad-Name"):
        kmsplug.Module("Bad-Name", TEST_PLUGIN_DIR)
    with pytest.raises(kmsplug.NotFoundError) as ei:
        kmsplug.Module("nope", TEST_PLUGIN_DIR)
    assert "statusbox" in ei.value.message  # the loader lists what is there

    shutil.copy(TEST_PLUGIN_DIR / "statusbox.so", trusted_tmp / "statusbox.so")
    os.chmod(trusted_tmp / "statusbox.so", 0o775)
    with pytest.raises(kmsplug.PermissionDeniedError, match="writable"):
        kmsplug.Module("statusbox", trusted_tmp)

    shutil.copy(TEST_PLUGIN_DIR / "statusbox.so", trusted_tmp / "other.so")  # table name != file name
    os.chmod(trusted_tmp / "other.so", 0o755)
    with pytest.raises(kmsplug.UnsupportedError, match="other"):
        kmsplug.Module("other", trusted_tmp)

    (trusted_tmp / "junk.so").write_bytes(b"not an ELF file")
    os.chmod(trusted_tmp / "junk.so", 0o644)
    with pytest.raises(kmsplug.UnsupportedError, match="junk"):
        kmsplug.Module("junk", trusted_tmp)

    with pytest.raises(kmsplug.NotFoundError):
        kmsplug.list_plugins(trusted_tmp / "missing")


def test_create_errors():
    with pytest.raises(kmsplug.UnavailableError, match="fail_status"):
        box(fail_status=5)
    with pytest.raises(kmsplug.InvalidArgumentError, match="unknown setting 'colour'"):
        box(colour="blue")


def test_library_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("KMSPLUG_LIBRARY", str(tmp_path / "libnothere.so"))
    with pytest.raises(kmsplug.LibraryError, match=r"libnothere.so.*\$KMSPLUG_LIBRARY"):
        kmsplug.Module("statusbox", TEST_PLUGIN_DIR)
    libc = ctypes.util.find_library("c")
    with pytest.raises(kmsplug.LibraryError, match="is not a kmsplug loader"):
        kmsplug.Module("statusbox", TEST_PLUGIN_DIR, library=libc)
    # the explicit argument wins over the environment
    m = kmsplug.Module("statusbox", TEST_PLUGIN_DIR, library=LIBRARY)
    m.close()


def test_library_search_order(monkeypatch):
    monkeypatch.setenv("KMSPLUG_LIBRARY", "/from/env.so")
    found = kmsplug._lib.candidates("/explicit.so")
    assert found[:2] == [("argument", "/explicit.so"), ("$KMSPLUG_LIBRARY", "/from/env.so")]
    monkeypatch.delenv("KMSPLUG_LIBRARY")
    assert all(src != "$KMSPLUG_LIBRARY" for src, _ in kmsplug._lib.candidates())


def test_list_plugins_and_plugin_dir(monkeypatch):
    infos = {p.name: p for p in kmsplug.list_plugins(TEST_PLUGIN_DIR)}
    assert set(infos) == {"statusbox", "statusbox_serial", "statusbox_v11"}
    assert infos["statusbox_serial"].capabilities == ("read", "write", "delete", "refresh")
    assert infos["statusbox"].status == "OK" and infos["statusbox"].abi == (1, 0)
    monkeypatch.setenv("KMS_PLUGIN_PATH", str(TEST_PLUGIN_DIR))
    assert kmsplug.plugin_dir() == str(TEST_PLUGIN_DIR)
    assert kmsplug.plugin_dir(PLUGIN_DIR) == str(PLUGIN_DIR)
    with kmsplug.open("statusbox") as c:  # found through $KMS_PLUGIN_PATH
        assert c.module.path == str(TEST_PLUGIN_DIR / "statusbox.so")


# --- host services ---------------------------------------------------------------------

def test_plugin_log_lines_reach_python_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="kmsplug")
    with box(log="hello from create"):
        pass
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("kmsplug.plugin.statusbox", logging.INFO, "hello from create")]


def test_env_mapping_replaces_the_process_environment(monkeypatch):
    monkeypatch.setenv("ONLY_IN_PROCESS", "p")
    with kmsplug.open("env", plugin_dir=PLUGIN_DIR, env={"ONLY_IN_MAP": "m\u00e9"}) as c:
        assert c.read_text("ONLY_IN_MAP") == "m\u00e9"
        with pytest.raises(kmsplug.NotFoundError, match="ONLY_IN_PROCESS"):
            c.read("ONLY_IN_PROCESS")
    with kmsplug.open("env", plugin_dir=PLUGIN_DIR) as c:  # no mapping: the process environment
        assert c.read_text("ONLY_IN_PROCESS") == "p"


def test_capability_missing_is_unsupported_from_the_real_plugin():
    with kmsplug.open("env", plugin_dir=PLUGIN_DIR, env={}) as c:
        with pytest.raises(kmsplug.UnsupportedError, match="read-only"):
            c.write("X", "y")
