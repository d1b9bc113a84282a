#!/usr/bin/env bash
# test_layers.sh - the layers hold: common/ includes only common/; peer/ and broker/ include
# their own headers and common/'s, never each other's; ctl/ (cpnctl) may use broker/'s pure policy. TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
echo "1..4"
n=0
check() { # layer allowed-dirs...
    local layer=$1 bad="" f inc ok d
    shift
    for f in "$SRC/$layer"/*.[ch]; do
        [ -e "$f" ] || continue
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
            ok=0
            for d in "$@"; do [ -e "$SRC/$d/$inc" ] && ok=1; done
            [ "$layer" = common ] && [ "$inc" = msg_schema.def ] && ok=1
            [ $ok = 1 ] || bad="$bad $(basename "$f"):$inc"
        done
    done
    n=$((n + 1))
    if [ -z "$bad" ]; then echo "ok $n - $layer includes only $*"; else
        echo "not ok $n - $layer includes outside $*:$bad"; fi
}
check common common
check peer peer common
check broker broker common
# cpnctl validates policies with the broker's own loader (cpnctl policy check), a pure core
check ctl ctl broker common
