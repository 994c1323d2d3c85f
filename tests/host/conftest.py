"""pytest fixtures for tests/host (helpers live in kms_host_helpers.py)."""

import pytest

from kms_host_helpers import require_binary


@pytest.fixture(scope="session", autouse=True)
def _need_binary():
    require_binary()
