"""Installing the package: `pip install ./bindings/python` into a fresh venv
(no package index needed: the build backend is in-tree), and `cmake
--install` into a scratch prefix, which puts kmsplug into Debian's Python
path and records where libkmsloader went."""

import os
import subprocess
import sys

from conftest import BUILD, HERE, LIBRARY, PLUGIN_DIR

PROBE = ("import kmsplug, sys; "
         "print(kmsplug.__file__); print(kmsplug._lib.load().path); "
         "print(','.join(p.name for p in kmsplug.list_plugins(sys.argv[1])))")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "KMSPLUG_LIBRARY", "KMS_PLUGIN_PATH")}
    env.update(extra)
    return env


def test_pip_install_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    p = subprocess.run([str(venv / "bin" / "pip"), "install", str(HERE.parent)], env=clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE, str(PLUGIN_DIR)], cwd="/",
                       env=clean_env(KMSPLUG_LIBRARY=str(LIBRARY)), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    where, lib, plugins = p.stdout.splitlines()
    assert where.startswith(str(venv)) and lib == str(LIBRARY) and "hashicorp_vault" in plugins
    p = subprocess.run([str(venv / "bin" / "kmsplug"), "plugins", "--plugin-dir", str(PLUGIN_DIR)],
                       env=clean_env(KMSPLUG_LIBRARY=str(LIBRARY)), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "env\t" in p.stdout, p.stderr
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m, kmsplug; "
                              "print(m.version('kmsplug'), kmsplug.__version__)"],
                             capture_output=True, text=True, env=clean_env(), cwd="/", timeout=60)
    a, b = version.stdout.split()
    assert a == b, "pyproject.toml and kmsplug.__version__ disagree"


def test_cmake_install_into_debians_python_path(tmp_path):
    prefix = tmp_path / "prefix"
    os.chmod(tmp_path, 0o755)
    subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=300)
    found = sorted(prefix.glob("lib/python3*/dist-packages/kmsplug/__init__.py")) + \
        sorted(prefix.glob("lib/python3/dist-packages/kmsplug/__init__.py"))
    assert len(found) == 1, found
    site = found[0].parent.parent
    installed = (site / "kmsplug" / "_install.py").read_text()
    assert f'LIBRARY = "{prefix}/' in installed
    plugin_dir = next(prefix.glob("lib*/**/kmsplug/plugins"))
    p = subprocess.run([sys.executable, "-c", PROBE, str(plugin_dir)], cwd="/",
                       env=clean_env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    where, lib, plugins = p.stdout.splitlines()
    assert where == str(site / "kmsplug" / "__init__.py")
    assert lib.startswith(str(prefix)) and os.path.exists(lib)   # the recorded library, no env var
    assert "hashicorp_vault" in plugins.split(",")
    # Debian's python3 searches this directory for the prefix /usr/local by itself.
    if str(site).endswith("dist-packages") and "python3." in site.parent.name:
        want = f"/usr/local/lib/{site.parent.name}/dist-packages"
        assert want in subprocess.run([sys.executable, "-c", "import sys; print(sys.path)"],
                                      capture_output=True, text=True).stdout
