"""pytest setup for bindings/python/tests: paths of the build tree, and the
checks that what the suites need is built (missing pieces FAIL, never skip).

CTest sets KMSPLUG_LIBRARY, KMS_PLUGIN_DIR, KMSPLUG_TEST_PLUGIN_DIR and
PYTHONPATH; run by hand from the source root they default to build/."""

import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SRC = pathlib.Path(os.environ.get("KMS_SOURCE_DIR", HERE.parents[2]))
BUILD = pathlib.Path(os.environ.get("KMS_BINARY_DIR", SRC / "build"))
PLUGIN_DIR = pathlib.Path(os.environ.get("KMS_PLUGIN_DIR", BUILD / "plugins"))
TEST_PLUGIN_DIR = pathlib.Path(os.environ.get("KMSPLUG_TEST_PLUGIN_DIR",
                                              BUILD / "bindings" / "python" / "plugins"))
os.environ.setdefault("KMSPLUG_LIBRARY", str(BUILD / "plugin_api" / "libkmsloader.so"))
LIBRARY = pathlib.Path(os.environ["KMSPLUG_LIBRARY"])
LAYOUT = pathlib.Path(os.environ.get("KMSPLUG_LAYOUT", BUILD / "bindings" / "python" / "kms_py_layout"))

# The package under test is the source tree's, whatever is installed.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session", autouse=True)
def _built():
    for need in (LIBRARY, PLUGIN_DIR / "env.so", PLUGIN_DIR / "hashicorp_vault.so",
                 TEST_PLUGIN_DIR / "statusbox.so", TEST_PLUGIN_DIR / "statusbox_serial.so",
                 TEST_PLUGIN_DIR / "statusbox_v11.so", LAYOUT):
        if not need.exists():
            pytest.fail(f"{need} is not built (cmake --build build)")

# The stand-in `litellm` (tests/stand_in/README.md): LiteLLM itself cannot be
# installed on CI machines.
sys.path.insert(0, str(HERE / "stand_in"))


@pytest.fixture
def trusted_tmp():
    """A fresh directory the loader trusts for plugins: under the build tree,
    not /tmp (the loader refuses sticky, world-writable directories on the
    way to a plugin, as OpenSSH's StrictModes does)."""
    import shutil
    import tempfile
    BUILD.mkdir(parents=True, exist_ok=True)
    path = pathlib.Path(tempfile.mkdtemp(prefix="pytest-plugins-", dir=BUILD))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
