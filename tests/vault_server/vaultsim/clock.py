"""The server's clock: wall time plus an offset that tests advance
(POST /__test__/clock {"advance": seconds}), so suites check TTLs, expiry
and delete_version_after without sleeping.  Every time Vault reasons about
(token expiry, KV version times, certificate validity, health's
server_time_utc) comes from now().

Thread safety: a lock guards the offset; one clock per server process.
"""

import threading
import time

_lock = threading.Lock()
_offset = 0.0


def now():
    """Seconds since the epoch, as the server sees them."""
    with _lock:
        return time.time() + _offset


def advance(seconds):
    """Moves the server's time forward (never back); returns the new now()."""
    global _offset
    if seconds < 0:
        raise ValueError("the clock only moves forward")
    with _lock:
        _offset += seconds
        return time.time() + _offset
