#!/usr/bin/env bash
# Installs the build into a temporary prefix (meson install --destdir) and
# builds tests/install/hello.cc against it with nothing but pkg-config.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name txmq.pc | head -n 1)
[ -n "$pc" ] || { echo "txmq.pc was not installed"; exit 1; }
for h in broker.h consumer.h message.h producer.h txmq.h; do
  find "$tmp/root" -path "*/include/txmq/$h" | grep -q . ||
    { echo "include/txmq/$h was not installed"; exit 1; }
done
if find "$tmp/root" -path '*/include/*' -name '*.capnp.h' | grep -q .; then
  echo "internal generated headers leaked into the install"; exit 1
fi

export PKG_CONFIG_PATH="$(dirname "$pc")"
prefix=$(sed -n 's/^prefix=//p' "$pc")
relocate=(--define-variable=prefix="$tmp/root$prefix")
flags=$(pkg-config "${relocate[@]}" --cflags --libs txmq)
libdir=$(pkg-config "${relocate[@]}" --variable=libdir txmq)
c++ -std=c++20 -Wall -Werror "$src/tests/install/hello.cc" $flags -o "$tmp/hello"
LD_LIBRARY_PATH="$libdir" "$tmp/hello" "$tmp/data"
