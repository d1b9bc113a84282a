#!/usr/bin/env bash
# test_demo_slurm.sh - scripts/demo-slurm passes with the programs of this build (CPN_BUILDDIR,
# set by make check): a real Slurm cluster behind a peer, a lease, the tenant's job in its
# reservation, a node DOWN, the NOTICE and the re-matched lease, release, no reservation left.
# TAP, one case per step the demo checks (its "ok:" lines), then its verdict; on failure the
# demo's output follows as TAP comments. Bounded: 120 s (the demo takes about 15 s).
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
STEPS=6 # the demo's "   ok: " lines: lease, reservation, job, notice, new lease, no reservation
echo "1..$((STEPS + 1))"
out=$(mktemp "${TMPDIR:-/tmp}/cpn-test-demo-slurm.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -f "$out"' EXIT
# timeout signals the demo, whose EXIT trap stops what it started (and the cluster's watchdog
# stops Slurm if even that is killed).
timeout -k 10 120 "$SRC/scripts/demo-slurm" >"$out" 2>&1
rc=$?
n=0
while IFS= read -r line && [ "$n" -lt "$STEPS" ]; do
    n=$((n + 1))
    echo "ok $n - ${line#   ok: }"
done < <(grep '^   ok: ' "$out")
for ((; n < STEPS; )); do n=$((n + 1)); echo "not ok $n - a step of the demo did not pass"; done
if [ "$rc" = 0 ] && grep -q '^demo-slurm: ok$' "$out"; then
    echo "ok $((STEPS + 1)) - demo-slurm exits 0"
else
    echo "not ok $((STEPS + 1)) - demo-slurm (exit $rc)"
    sed 's/^/# /' "$out"
fi
