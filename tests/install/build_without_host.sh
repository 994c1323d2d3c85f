#!/usr/bin/env bash
# build_without_host.sh BUILD_DIR SOURCE_DIR -- the loader and the plugins
# build with only their own dependencies: configure with KMS_BUILD_HOST=OFF
# and BUILD_TESTING=OFF while pkg-config cannot see libyaml, SQLite or
# cmocka, build everything, and check what came out.
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d "$build/no-host-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "build_without_host: $*" >&2; exit 1; }

# A pkg-config search path holding every system .pc file but the host's and
# the tests' libraries.
mkdir "$tmp/pc"
IFS=: read -r -a pcdirs <<<"$(pkg-config --variable pc_path pkg-config)"
for d in "${pcdirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*.pc; do
    [ -e "$f" ] || continue
    case $(basename "$f") in yaml-0.1.pc | sqlite3.pc | cmocka.pc) continue ;; esac
    [ -e "$tmp/pc/$(basename "$f")" ] || ln -s "$f" "$tmp/pc/"
  done
done
export PKG_CONFIG_LIBDIR="$tmp/pc" PKG_CONFIG_PATH=
pkg-config --exists yaml-0.1 && fail "libyaml still visible to pkg-config"

# Proof the hiding works: the default configuration must now fail on libyaml.
if cmake -S "$src" -B "$tmp/default" >"$tmp/default.log" 2>&1; then
  fail "a default configure succeeded without libyaml: the check proves nothing"
fi
grep -q "libcmocka-dev\|libyaml-dev" "$tmp/default.log" || { cat "$tmp/default.log"; fail "unexpected failure"; }

cmake -S "$src" -B "$tmp/b" -DKMS_BUILD_HOST=OFF -DBUILD_TESTING=OFF >"$tmp/cfg.log" 2>&1 ||
  { cat "$tmp/cfg.log"; fail "configure without host and tests failed"; }
cmake --build "$tmp/b" -j2 >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; fail "build failed"; }
for f in plugins/env.so plugins/hashicorp_vault.so plugin_api/libkmsloader.so plugin_api/libkmsplugutil.a; do
  [ -f "$tmp/b/$f" ] || fail "$f was not built"
done
[ ! -e "$tmp/b/host_stub" ] || fail "host_stub was configured with KMS_BUILD_HOST=OFF"
[ ! -e "$tmp/b/tests" ] || fail "tests were configured with BUILD_TESTING=OFF"
echo "build_without_host: loader and plugins built without libyaml, SQLite or cmocka"
