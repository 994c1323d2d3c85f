"""The binding's ABI 1.1 calls: ctypes layouts against the header, per-call
options (location, version pin, flags, delete mode and recovery window),
read_into and BufferTooSmallError, list, health, change notifications
(on_change), against statusbox_v11 (every 1.1 slot), the real env plugin
(1.1: list, health, buffer read, the `prefix` location key) and statusbox
(an ABI 1.0 table: the 1.1 calls are UNSUPPORTED, the 1.0 ones unchanged).
The Vault plugin's 1.1 slots are not used here: they are being written
separately (see docs/litellm.md)."""

import ctypes
import logging
import subprocess
import threading

import pytest

import kmsplug
from kmsplug import _lib, errors
from conftest import LAYOUT, PLUGIN_DIR, TEST_PLUGIN_DIR

TEAM = {"namespace": "team1", "mount": "kv2", "path_prefix": "teams"}


def box(name="statusbox_v11", on_change=None, **settings):
    return kmsplug.open(name, settings, plugin_dir=TEST_PLUGIN_DIR, on_change=on_change)


@pytest.fixture
def v11():
    c = box()
    yield c
    c.close()


@pytest.fixture
def v10():
    c = box("statusbox")
    yield c
    c.close()


def last_options(c):
    return c.read_text("last_options")


# --- layouts --------------------------------------------------------------------------

CTYPES = {"kms_error": _lib.KmsError_, "kms_secret": _lib.Secret_, "kms_setting": _lib.Setting_,
          "kms_write_options": _lib.WriteOptions_, "kms_host": _lib.Host_,
          "kms_plugin_info": _lib.PluginInfo_, "kms_call_options": _lib.CallOptions_,
          "kms_secret_info": _lib.SecretInfo_, "kms_health": _lib.Health_,
          "kms_change": _lib.Change_, "kms_plugin": _lib.Plugin_}


def test_ctypes_layouts_match_the_header():
    out = subprocess.run([str(LAYOUT)], capture_output=True, check=True, timeout=30).stdout.decode()
    checked = 0
    for line in out.splitlines():
        what, number = line.split()
        struct, _, field = what.partition(".")
        cls = CTYPES[struct]
        got = getattr(cls, field).offset if field else ctypes.sizeof(cls)
        assert got == int(number), f"{what}: ctypes {got}, C {number}"
        checked += 1
    assert checked >= 25


# --- ABI 1.0 plugin: 1.1 calls refused, 1.0 calls unchanged ------------------------------

def test_abi_1_0_plugin_refuses_options_and_keeps_working_without_them(v10):
    assert v10.module.abi == (1, 0) and v10.supports_options is False
    assert not v10.module.has_slots("read_secret_opt") and v10.module.has_slots("read_secret")
    with pytest.raises(kmsplug.UnsupportedError) as ei:
        v10.read("x", location=TEAM)
    assert "read_secret_opt" in ei.value.message and "ABI 1.1" in ei.value.message
    assert "'statusbox' (ABI 1.0)" in ei.value.message
    for call, slot in ((lambda: v10.write("x", "v", location={"mount": "m"}), "write_secret_opt"),
                       (lambda: v10.delete("x", permanent=True), "delete_secret_opt"),
                       (lambda: v10.read("x", version=2), "read_secret_opt"),
                       (lambda: v10.read("x", bypass_cache=True), "read_secret_opt"),
                       (lambda: v10.list(), "list_secrets"),
                       (v10.health, "health")):
        with pytest.raises(kmsplug.UnsupportedError, match=slot):
            call()
    assert v10.read_text("last_options") == ""  # nothing reached the plugin
    # Default options are exactly the 1.0 calls.
    v10.write("k", b"v\0w")
    assert v10.read_secret("k", version=None, location={}) == kmsplug.Secret(b"v\0w", 1, False)
    buf = bytearray(8)
    assert v10.read_into("k", buf) == kmsplug.ReadInfo(3, 1, False)  # the loader copies
    assert bytes(buf[:4]) == b"v\0w\0"
    v10.delete("k", permanent=None, location=None)
    with pytest.raises(kmsplug.NotFoundError):
        v10.read("k")


def test_a_loader_without_the_1_1_calls_is_named(v11, monkeypatch):
    monkeypatch.setitem(_lib.ABI11_FEATURES, "options", ("kms_client_read_opt_gone",))
    monkeypatch.setitem(_lib.ABI11_FEATURES, "health", ("kms_client_health_gone",))
    with pytest.raises(kmsplug.UnsupportedError) as ei:
        v11.read("x", location=TEAM)
    assert "loader" in ei.value.message and "kms_client_read_opt_gone" in ei.value.message
    with pytest.raises(kmsplug.UnsupportedError, match="kms_client_health_gone"):
        v11.health()
    v11.write("plain", "ok")  # default options need no 1.1 call
    assert v11.read_text("plain") == "ok"


# --- per-call options -----------------------------------------------------------------

def test_location_selects_a_separate_store_and_reaches_the_plugin(v11):
    assert v11.module.abi == (1, 1) and v11.supports_options
    assert {"list", "notify"} <= set(v11.module.capabilities)
    v11.write("k", "team value", location=TEAM)
    assert last_options(v11) == ("flags=0 version=0 delete_mode=0 recovery=0 "
                                 "location=namespace=team1,mount=kv2,path_prefix=teams")
    with pytest.raises(kmsplug.NotFoundError):
        v11.read("k")  # the default location does not hold it
    assert v11.read_text("k", location=TEAM) == "team value"
    v11.write("k", "default value")
    assert v11.read_text("k") == "default value"
    assert v11.read_text("k", location=TEAM) == "team value"
    v11.delete("k", location=TEAM, permanent=False, recovery_window_days=14)
    assert last_options(v11).startswith("flags=0 version=0 delete_mode=1 recovery=14 location=namespace")
    with pytest.raises(kmsplug.NotFoundError):
        v11.read("k", location=TEAM)
    assert v11.read_text("k") == "default value"
    v11.delete("k", permanent=True)
    assert last_options(v11) == "flags=0 version=0 delete_mode=2 recovery=0 location="


def test_version_pin_and_read_flags(v11):
    v11.write("k", "one")
    v11.write("k", "two")
    with pytest.raises(kmsplug.NotFoundError, match="version"):
        v11.read("k", version=1)  # statusbox keeps the current version only
    assert v11.read_secret("k", version=2) == kmsplug.Secret(b"two", 2, False)
    assert last_options(v11) == "flags=0 version=2 delete_mode=0 recovery=0 location="
    assert v11.read_text("k", bypass_cache=True) == "two"
    assert last_options(v11).startswith("flags=2 ")
    assert v11.read_text("k", nonblocking=True) == "two"
    assert last_options(v11).startswith("flags=1 ")
    with pytest.raises(kmsplug.UnavailableError):
        v11.read("missing", nonblocking=True)


def test_bad_options_are_clear_errors(v11):
    with pytest.raises(kmsplug.InvalidArgumentError, match="'colour'"):
        v11.read("k", location={"colour": "blue"})  # the plugin names the unknown key
    with pytest.raises(kmsplug.InvalidArgumentError, match="NONBLOCKING|BYPASS|nonblocking|bypass"):
        v11.read("k", nonblocking=True, bypass_cache=True)  # the loader refuses the pair
    with pytest.raises(kmsplug.InvalidArgumentError, match="recovery_window_days"):
        v11.delete("k", permanent=True, recovery_window_days=7)
    for bad in (-1, "2", True, 2.0, 2 ** 63):
        with pytest.raises(kmsplug.InvalidArgumentError, match="version"):
            v11.read("k", version=bad)
    for bad in (-1, "7", 2 ** 32):
        with pytest.raises(kmsplug.InvalidArgumentError, match="recovery_window_days"):
            v11.delete("k", recovery_window_days=bad)
    with pytest.raises(kmsplug.InvalidArgumentError, match="permanent"):
        v11.delete("k", permanent="yes")
    with pytest.raises(kmsplug.InvalidArgumentError, match="NUL"):
        v11.read("k", location={"mount": "a\0b"})
    with pytest.raises(TypeError):
        v11.read("k", {"mount": "m"})  # options are keywords only


# --- read_into ------------------------------------------------------------------------

def test_read_into_exact_too_small_and_bad_buffers(v11):
    v11.write("bin", b"a\0b\xff")
    buf = bytearray(5)
    assert v11.read_into("bin", buf) == kmsplug.ReadInfo(4, 1, False)
    assert bytes(buf) == b"a\0b\xff\0"
    mv = memoryview(bytearray(b"x" * 4))
    with pytest.raises(kmsplug.BufferTooSmallError) as ei:
        v11.read_into("bin", mv)
    assert ei.value.needed == 5 and ei.value.status == errors.BUFFER_TOO_SMALL
    assert bytes(mv) == b"xxxx"  # no part of the value
    with pytest.raises(kmsplug.BufferTooSmallError) as ei:
        v11.read_into("bin", bytearray())  # the size question
    assert ei.value.needed == 5
    v11.write("t", "team", location=TEAM)
    buf = bytearray(16)
    assert v11.read_into("t", buf, location=TEAM).length == 4 and buf[:4] == b"team"
    with pytest.raises(kmsplug.NotFoundError):
        v11.read_into("t", buf)
    for bad in (b"immutable", "text", 5):
        with pytest.raises(kmsplug.InvalidArgumentError, match="buffer"):
            v11.read_into("bin", bad)
    assert int(v11.read_text("outstanding")) == 0


# --- list and health ------------------------------------------------------------------

def test_list_with_prefix_and_location(v11):
    for n in ("b/2", "a/1", "a/2", "c"):
        v11.write(n, "v")
    v11.write("a/team", "v", location=TEAM)
    assert v11.list() == ["a/1", "a/2", "b/2", "c"]
    assert v11.list("a/") == ["a/1", "a/2"]
    assert v11.list("zzz") == []
    assert v11.list(location=TEAM) == ["a/team"]
    with pytest.raises(kmsplug.InvalidArgumentError, match="'colour'"):
        v11.list(location={"colour": "x"})


def test_health_counts_what_happened(v11):
    h = v11.health()
    assert h["reachable"] is True and h["authenticated"] is True and h["token_ttl_seconds"] is None
    assert (h["hits"], h["misses"], h["errors_by_status"], h["last_error_status"]) == (0, 0, {}, None)
    v11.write("k", "v")
    v11.read("k")
    for _ in range(2):
        with pytest.raises(kmsplug.NotFoundError):
            v11.read("nope")
    with pytest.raises(kmsplug.PermissionDeniedError):
        v11.read("status/3")
    h = v11.health()
    assert (h["hits"], h["misses"], h["cache_entries"]) == (1, 2, 1)
    assert h["errors_by_status"] == {"NOT_FOUND": 2, "PERMISSION_DENIED": 1}
    assert h["last_error_status"] == "PERMISSION_DENIED"
    assert h["last_error"] == "statusbox: status requested by name"
    assert h["last_error_time"] > 1_500_000_000
    with box(unreachable="1") as down:
        assert down.health()["reachable"] is False


def test_env_plugin_1_1(monkeypatch):
    env = {"APP_ONE": "1", "APP_TWO": "22", "OTHER_ONE": "x"}
    monkeypatch.setenv("KMSPLUG_T11_A", "alpha")
    monkeypatch.setenv("KMSPLUG_T11_B", "beta")
    with kmsplug.open("env", plugin_dir=PLUGIN_DIR, env=env) as c:
        assert c.module.abi == (1, 1) and "list" in c.module.capabilities
        assert c.read_text("ONE", location={"prefix": "APP_"}) == "1"
        assert c.read_text("ONE", location={"prefix": "OTHER_"}) == "x"
        buf = bytearray(3)
        assert c.read_into("TWO", buf, location={"prefix": "APP_"}) == kmsplug.ReadInfo(2, 0, False)
        with pytest.raises(kmsplug.BufferTooSmallError) as ei:
            c.read_into("APP_TWO", bytearray(2))
        assert ei.value.needed == 3
        with pytest.raises(kmsplug.UnsupportedError, match="version"):
            c.read("APP_ONE", version=3)
        with pytest.raises(kmsplug.InvalidArgumentError, match="'mount'"):
            c.read("APP_ONE", location={"mount": "kv"})
        h = c.health()
        assert h["errors_by_status"].get("BUFFER_TOO_SMALL") == 1
    with kmsplug.open("env", plugin_dir=PLUGIN_DIR) as c:  # lists the process environment
        assert c.list("KMSPLUG_T11_") == ["KMSPLUG_T11_A", "KMSPLUG_T11_B"]


# --- notifications --------------------------------------------------------------------

def test_on_change_receives_changes_from_the_calling_and_a_foreign_thread():
    got = []
    with box(on_change=lambda ch: got.append((ch, threading.get_ident()))) as c:
        assert c.read_text("notify/openai") == "notified"
        assert c.read_text("notify_deleted/gone", location=TEAM) == "notified"
        c.read("notify_thread/rotated")
    me = threading.get_ident()
    assert got[0] == (kmsplug.Change("openai", "updated", 7, {}), me)
    assert got[1] == (kmsplug.Change("gone", "deleted", 0, TEAM), me)
    assert got[2][0] == kmsplug.Change("rotated", "updated", 7, {})
    assert got[2][1] != me  # a thread the plugin started, unknown to Python before


def test_without_on_change_the_plugin_has_no_notify():
    with box() as c:
        with pytest.raises(kmsplug.UnsupportedError, match="notify"):
            c.read("notify/x")
    with pytest.raises(kmsplug.InvalidArgumentError, match="on_change"):
        box(on_change="not callable")


def test_a_failing_callback_is_logged_never_raised_into_c(caplog):
    def boom(change):
        raise RuntimeError(f"callback broke on {change.name}")

    with caplog.at_level(logging.ERROR, logger="kmsplug"):
        with box(on_change=boom) as c:
            assert c.read_text("notify_thread/k") == "notified"
            assert c.read_text("notify/k") == "notified"
    assert caplog.text.count("on_change callback failed") == 2
    assert "callback broke on k" in caplog.text


def test_close_from_the_callback_is_refused_not_a_deadlock(caplog):
    holder = {}

    def close_me(change):
        holder["client"].close()

    with caplog.at_level(logging.ERROR, logger="kmsplug"):
        with box(on_change=close_me) as c:
            holder["client"] = c
            assert c.read_text("notify_thread/k") == "notified"
            assert not c.closed
    assert "close() called from an on_change callback" in caplog.text
    assert c.closed


def test_many_threads_with_options_lists_buffers_and_notifications(v11):
    seen = []
    lock = threading.Lock()

    def on_change(change):
        with lock:
            seen.append(change.name)

    c = box(on_change=on_change)
    failures = []

    def worker(i):
        try:
            loc = {"namespace": f"t{i % 3}"}
            buf = bytearray(32)
            for j in range(50):
                c.write(f"k{i}", f"v{i}-{j}", location=loc)
                n = c.read_into(f"k{i}", buf, location=loc).length
                assert buf[:n] == f"v{i}-{j}".encode()
                assert f"k{i}" in c.list(location=loc)
                c.read(f"notify_thread/n{i}")
                c.health()
        except Exception as e:  # pylint: disable=broad-except
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(seen) == 8 * 50
    assert int(c.read_text("outstanding")) == 0
    c.close()
