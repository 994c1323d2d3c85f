"""The AWS server's clocks, set by tests (POST /__test__/clock) so nothing
sleeps:

  now()          the server's business time: credential and IMDS-token expiry,
                 recovery windows, dates in answers; "advance" moves it.
  signing_now()  what SigV4's 5-minute window compares X-Amz-Date with: wall
                 time plus "skew".  Kept apart from now() so a test can move
                 days ahead (a recovery window ending) while real clients keep
                 signing with the machine's clock, and can still fake a skewed
                 client with "skew".

Thread safety: a lock guards the offsets; one Clock per server.
"""

import threading
import time


class Clock:
    def __init__(self):
        self._lock = threading.Lock()
        self._offset = 0.0
        self._skew = 0.0

    def now(self):
        """Seconds since the epoch, as the server's state sees them."""
        with self._lock:
            return time.time() + self._offset

    def signing_now(self):
        """The time SigV4 requests are checked against."""
        with self._lock:
            return time.time() + self._skew

    def advance(self, seconds):
        """Moves now() by seconds (forward, or back); returns the new now()."""
        with self._lock:
            self._offset += seconds
            return time.time() + self._offset

    def set_skew(self, seconds):
        """signing_now() becomes wall time + seconds."""
        with self._lock:
            self._skew = float(seconds)

    def reset(self):
        with self._lock:
            self._offset = self._skew = 0.0
