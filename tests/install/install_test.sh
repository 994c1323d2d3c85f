#!/usr/bin/env bash
# install_test.sh BUILD_DIR EXAMPLES_DIR -- what a plugin author does after
# installing kmsplug: pkg-config, compile a plugin and a host, load, read.
set -euo pipefail
build=$1 examples=$2
# Under the build tree, not /tmp: the loader refuses plugin directories
# below a directory others can write (sticky /tmp included).
tmp=$(mktemp -d "$build/install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
plugindir=$(pkg-config --variable=plugindir kmsplug)
test -f "$plugindir/env.so" || { echo "env.so not installed in $plugindir"; exit 1; }
test -f "$tmp/prefix/include/kmsplug/kms_plugin.h"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror $(pkg-config --cflags kmsplug) -shared -fPIC \
   -fvisibility=hidden "$examples/hello_plugin.c" -o "$plugindir/hello.so"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror $(pkg-config --cflags kmsplug) "$examples/hello_host.c" \
   $(pkg-config --libs kmsplug) -o "$tmp/hello_host"
[ "$(nm -D --defined-only "$plugindir/hello.so" | awk '$2 ~ /^[A-Z]$/ {print $3}')" = kms_plugin_entry ]
export LD_LIBRARY_PATH="$tmp/prefix/lib"
out=$("$tmp/hello_host" "$plugindir" hello greeting)
[ "$out" = "greeting = hello, world" ] || { echo "unexpected output: $out"; exit 1; }
if "$tmp/hello_host" "$plugindir" hello nope 2>"$tmp/err"; then echo "missing secret read succeeded"; exit 1; fi
grep -q "NOT_FOUND: hello: only 'greeting' exists" "$tmp/err"
export KMS_SECRET_FROM_ENV=ok
out=$("$tmp/hello_host" "$plugindir" env KMS_SECRET_FROM_ENV)
[ "$out" = "KMS_SECRET_FROM_ENV = ok" ]
echo "install test: installed header, loader, pkg-config and env plugin work out of tree"
