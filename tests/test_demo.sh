#!/usr/bin/env bash
# test_demo.sh - scripts/demo passes (exit 0 and "demo: ok") with the programs of this build
# (CPN_BUILDDIR, set by make check; without it, the demo builds into build/ itself).
# TAP output; on failure the demo's output follows as TAP comments. Bounded: 180 s.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
echo "1..1"
out=$(mktemp "${TMPDIR:-/tmp}/cpn-test-demo.XXXXXX") || { echo "not ok 1 - demo (mktemp)"; exit 0; }
trap 'rm -f "$out"' EXIT
# timeout signals the demo, whose EXIT trap stops the daemons it started.
timeout -k 10 180 "$SRC/scripts/demo" >"$out" 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -q '^demo: ok$' "$out"; then
    echo "ok 1 - demo"
else
    echo "not ok 1 - demo (exit $rc)"
    sed 's/^/# /' "$out"
fi
