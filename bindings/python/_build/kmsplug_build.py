"""kmsplug_build -- an in-tree PEP 517 build backend (standard library only).

Why: kmsplug is pure Python, and `pip install ./bindings/python` must work on
machines without a package index (pip's build isolation would otherwise
fetch setuptools first). This backend needs nothing: it zips kmsplug/*.py
into a wheel with the metadata from pyproject.toml's [project] table.
"""

import base64
import hashlib
import io
import os
import pathlib
import re
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "kmsplug"


def _project():
    """[project] of pyproject.toml: tomllib when present (3.11+), else the
    flat `key = "value"` lines and [project.scripts] this file uses."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
        return tomllib.loads(text)["project"]
    except ImportError:
        out, section = {"scripts": {}}, None
        for line in text.splitlines():
            m = re.match(r"\s*\[(.+)\]\s*$", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r'\s*([\w.-]+)\s*=\s*"(.*)"\s*$', line)
            if m and section == "project":
                out[m.group(1)] = m.group(2)
            elif m and section == "project.scripts":
                out["scripts"][m.group(1)] = m.group(2)
        return out


def _metadata(p):
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}",
             f"Summary: {p.get('description', '')}"]
    if p.get("requires-python"):
        lines.append(f"Requires-Python: {p['requires-python']}")
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + (ROOT / "README.md").read_text(encoding="utf-8")


def _sources():
    return sorted(f for f in (ROOT / PACKAGE).glob("*.py") if f.name != "_install.py")


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    info = f"{dist}.dist-info"
    files = [(f"{PACKAGE}/{f.name}", f.read_bytes()) for f in _sources()]
    files.append((f"{info}/METADATA", _metadata(p).encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: kmsplug_build\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    scripts = p.get("scripts") or {}
    if scripts:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files.append((f"{info}/entry_points.txt", body.encode()))
    record = io.StringIO()
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(data)}\n")
    record.write(f"{info}/RECORD,,\n")
    files.append((f"{info}/RECORD", record.getvalue().encode()))
    wheel = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return wheel


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    members = [ROOT / "pyproject.toml", ROOT / "README.md", pathlib.Path(__file__).resolve()]
    members += _sources()
    name = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for f in members:
            t.add(f, arcname=f"{dist}/{f.relative_to(ROOT)}")
        pkg_info = _metadata(p).encode()
        ti = tarfile.TarInfo(f"{dist}/PKG-INFO")
        ti.size = len(pkg_info)
        t.addfile(ti, io.BytesIO(pkg_info))
    return name
