"""python3 -m kmsplug -- a small command line over the binding.

  python3 -m kmsplug plugins [--plugin-dir DIR]
      list the plugins of a directory: name, version, ABI, capabilities (or
      why a file cannot load)
  python3 -m kmsplug get NAME --plugin PLUGIN [--plugin-dir DIR] [--setting KEY=VALUE]...
      print one secret's value to stdout (raw bytes, plus a newline when
      stdout is a terminal). PLUGIN defaults to $KMSPLUG_PLUGIN. The plugin
      reads its own environment (HCP_VAULT_ADDR, ...).

Exit status: 0 success, 1 the operation failed (status and reason on
stderr), 2 usage error. Messages never contain the secret.
"""

import argparse
import os
import sys

from . import _lib
from .client import list_plugins, open_client
from .errors import KmsError


def _plugins(args):
    infos = list_plugins(args.plugin_dir, args.library)
    if not infos:
        print(f"no plugins in {args.plugin_dir or 'the plugin directory'}", file=sys.stderr)
        return 1
    for p in infos:
        if p.status == "OK":
            print(f"{p.name}\t{p.version}\tABI {p.abi[0]}.{p.abi[1]}\t{','.join(p.capabilities)}\t{p.path}")
        else:
            print(f"{p.name}\t-\t-\t{p.status}: {p.error}\t{p.path}")
    return 0


def _get(args):
    plugin = args.plugin or os.environ.get("KMSPLUG_PLUGIN")
    if not plugin:
        print("kmsplug get: no plugin: pass --plugin NAME or set KMSPLUG_PLUGIN", file=sys.stderr)
        return 2
    settings = {}
    for item in args.setting:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"kmsplug get: --setting wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        settings[key] = value
    with open_client(plugin, settings, plugin_dir=args.plugin_dir, library=args.library) as c:
        value = c.read(args.name)
    out = sys.stdout.buffer
    out.write(value)
    if sys.stdout.isatty():
        out.write(b"\n")
    out.flush()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m kmsplug", description="kmsplug plugins from Python")
    ap.add_argument("--library", help=f"libkmsloader to use (default: ${_lib.LIBRARY_ENV}, the "
                                      "installed one, the linker cache)")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list the plugins of a directory")
    p.add_argument("--plugin-dir", help="default: $KMS_PLUGIN_PATH, else the installed directory")
    g = sub.add_parser("get", help="print a secret's value")
    g.add_argument("name")
    g.add_argument("--plugin", help="plugin name (default: $KMSPLUG_PLUGIN)")
    g.add_argument("--plugin-dir", help="default: $KMS_PLUGIN_PATH, else the installed directory")
    g.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a plugin setting (key_management_settings), repeatable")
    args = ap.parse_args(argv)
    try:
        return _plugins(args) if args.command == "plugins" else _get(args)
    except KmsError as e:
        print(f"kmsplug {args.command}: {e}", file=sys.stderr)
        return 1
    except _lib.LibraryError as e:
        print(f"kmsplug {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
