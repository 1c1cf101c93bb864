#!/usr/bin/env bash
# Builds the C examples' checked-in .wasm files from their sources with clang and lld, so the
# tests need no compiler. With --check, builds into a temporary directory and fails when a
# checked-in .wasm differs from what clang makes of its source (CI runs this).
set -euo pipefail
cd "$(dirname "$0")"
out=examples
if [ "${1:-}" = "--check" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
for src in examples/*.c; do
    name=$(basename "$src" .c)
    clang --target=wasm32 -nostdlib -ffreestanding -O2 -I . -Wl,--no-entry \
        -o "$out/$name.wasm" "$src"
    if [ "$out" != examples ] && ! cmp -s "$out/$name.wasm" "examples/$name.wasm"; then
        echo "examples/$name.wasm is not what clang builds from examples/$name.c: run sandbox/guest/build-examples.sh" >&2
        exit 1
    fi
done
echo "C examples: $(ls examples/*.c | wc -l) built$([ "$out" = examples ] || echo ', identical to the checked-in .wasm')"
