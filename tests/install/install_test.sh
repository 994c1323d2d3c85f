#!/usr/bin/env bash
# install_test.sh BUILD_DIR SOURCE_DIR -- what a plugin author and a host
# author do with an installed kmsplug, nothing from the source tree but the
# example sources: build docs/examples' plugin and host with pkg-config and
# again with CMake's find_package(kmsplug), build plugins/env/env.c (the real
# backend the README points to) out of tree, then load and read with each.
# KMS_KEEP_TMP=1 keeps the scratch directory (under BUILD_DIR) for a look.
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
examples=$src/docs/examples
# Under the build tree, not /tmp: the loader refuses plugin directories
# below a directory others can write (sticky /tmp included).
tmp=$(mktemp -d "$build/install-test.XXXXXX")
trap '[ -n "${KMS_KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
fail() { echo "install test: $*" >&2; exit 1; }
exports_only_entry() { # the plugin exports kms_plugin_entry and nothing else
  local got
  got=$(nm -D --defined-only "$1" | awk '$2 ~ /^[A-Z]$/ {print $3}')
  [ "$got" = kms_plugin_entry ] || fail "$1 exports: $got"
}

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
plugindir=$(pkg-config --variable=plugindir kmsplug)
[ -f "$plugindir/env.so" ] || fail "env.so not installed in $plugindir"
for f in include/kmsplug/kms_plugin.h include/kmsplug/kms_plugin_util.h lib/libkmsplugutil.a \
         lib/cmake/kmsplug/kmsplugConfig.cmake; do
  [ -f "$tmp/prefix/$f" ] || fail "$f not installed"
done
export LD_LIBRARY_PATH="$tmp/prefix/lib"

# 1. pkg-config: the example plugin and host.
cflags=(-std=c99 -Wall -Wextra -Werror)
# shellcheck disable=SC2046
cc "${cflags[@]}" $(pkg-config --cflags kmsplug-plugin) -shared -fPIC -fvisibility=hidden \
   "$examples/hello_plugin.c" $(pkg-config --libs kmsplug-plugin) -o "$plugindir/hello.so"
# shellcheck disable=SC2046
cc "${cflags[@]}" $(pkg-config --cflags kmsplug) "$examples/hello_host.c" \
   $(pkg-config --libs kmsplug) -o "$tmp/hello_host"
exports_only_entry "$plugindir/hello.so"
out=$("$tmp/hello_host" "$plugindir" hello greeting)
[ "$out" = "greeting = hello, world" ] || fail "unexpected output: $out"
if "$tmp/hello_host" "$plugindir" hello nope 2>"$tmp/err"; then fail "missing secret read succeeded"; fi
grep -q "NOT_FOUND: hello: only 'greeting' exists, not 'nope'" "$tmp/err" || fail "$(cat "$tmp/err")"
export KMS_SECRET_FROM_ENV=ok
out=$("$tmp/hello_host" "$plugindir" env KMS_SECRET_FROM_ENV)
[ "$out" = "KMS_SECRET_FROM_ENV = ok" ] || fail "installed env.so: $out"

# 2. The env backend from its source file alone, as a plugin author's own code.
mkdir -m 755 "$tmp/oot"
# shellcheck disable=SC2046
cc "${cflags[@]}" $(pkg-config --cflags kmsplug-plugin) -shared -fPIC -fvisibility=hidden \
   "$src/plugins/env/env.c" $(pkg-config --libs kmsplug-plugin) -o "$tmp/oot/env.so"
exports_only_entry "$tmp/oot/env.so"
out=$("$tmp/hello_host" "$tmp/oot" env KMS_SECRET_FROM_ENV)
[ "$out" = "KMS_SECRET_FROM_ENV = ok" ] || fail "out-of-tree env.so: $out"

# 3. CMake: find_package(kmsplug) with docs/examples/CMakeLists.txt.
cmake -S "$examples" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "configuring docs/examples with find_package failed"; }
cmake --build "$tmp/cmake-build" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "building docs/examples with find_package failed"; }
exports_only_entry "$tmp/cmake-build/plugins/hello.so"
out=$(env -u LD_LIBRARY_PATH "$tmp/cmake-build/hello_host" "$tmp/cmake-build/plugins" hello greeting)
[ "$out" = "greeting = hello, world" ] || fail "CMake-built example: $out"
libs=$(env -u LD_LIBRARY_PATH ldd "$tmp/cmake-build/hello_host") # not piped into grep -q: SIGPIPE
[[ $libs == *"$tmp/prefix/lib/libkmsloader"* ]] ||
  fail "CMake-built host does not use the installed libkmsloader: $libs"
echo "install test: headers, libkmsloader, libkmsplugutil, pkg-config, the CMake package and" \
     "the env plugin's source work out of tree"
