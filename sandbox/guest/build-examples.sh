#!/usr/bin/env bash
# Builds the C examples' checked-in .wasm files from their sources with clang and lld, so the
# tests need no compiler. With --check, builds into a temporary directory and fails when a
# checked-in .wasm differs from what clang makes of its source (CI runs this).
#
# wasm-ld always defines the shadow-stack pointer `__stack_pointer`, a mutable global, even when
# no function uses it (scalar code at -O2 keeps no shadow stack). ABI v2 refuses every mutable
# global, so each module's global section is dropped after checking that it holds exactly that
# one global (the host's validation refuses the module if a function still referred to it).
# `--strip-all` drops the name section, which would name the dropped global.
set -euo pipefail
cd "$(dirname "$0")"
out=examples
if [ "${1:-}" = "--check" ]; then
    out=$(mktemp -d)
fi
linked=$(mktemp)
trap 'rm -f "$linked"; [ "$out" = examples ] || rm -rf "$out"' EXIT

# Copies the module on stdin to stdout without its global section (section 6), which must
# hold one mutable i32 global with a constant initialiser.
drop_stack_pointer() {
    perl -0777 -e '
        binmode STDIN;
        binmode STDOUT;
        my $w = <STDIN>;
        my $i = 8;
        my $out = substr($w, 0, $i);
        sub leb {
            my ($r, $s) = (0, 0);
            while (1) {
                my $b = ord(substr($w, $i++, 1));
                $r |= ($b & 0x7f) << $s;
                $s += 7;
                return $r if $b < 0x80;
            }
        }
        while ($i < length $w) {
            my $start = $i;
            my $id = ord(substr($w, $i++, 1));
            my $n = leb();
            my $body = substr($w, $i, $n);
            $i += $n;
            if ($id == 6) {
                $body =~ /\A\x01\x7f\x01\x41[\x80-\xff]*[\x00-\x7f]\x0b\z/
                    or die "the global section is not just __stack_pointer\n";
                next;
            }
            $out .= substr($w, $start, $i - $start);
        }
        print $out;
    '
}

for src in examples/*.c; do
    name=$(basename "$src" .c)
    clang --target=wasm32 -nostdlib -ffreestanding -O2 -I . -Wl,--no-entry -Wl,--strip-all \
        -o "$linked" "$src"
    drop_stack_pointer <"$linked" >"$out/$name.wasm"
    if [ "$out" != examples ] && ! cmp -s "$out/$name.wasm" "examples/$name.wasm"; then
        echo "examples/$name.wasm is not what clang builds from examples/$name.c: run sandbox/guest/build-examples.sh" >&2
        exit 1
    fi
done
echo "C examples: $(ls examples/*.c | wc -l) built$([ "$out" = examples ] || echo ', identical to the checked-in .wasm')"
