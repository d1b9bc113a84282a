#!/usr/bin/env bash
# test_frag_bench.sh - the short mode of scripts/bench/fragmentation (issue 16): the core
# driver on a sample of the Alibaba GPU 2023 trace (tests/data/frag), two seeds, every policy.
# It fails if a policy over-commits a device (bench_frag exits 1), if a summary is missing,
# or if FGD or cpn leave more GPUs unallocated than random placement. TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${CPN_BUILDDIR:-.}/scripts/bench/bench_frag
echo "1..3"
out=$(timeout 120 "$BIN" --data "$SRC/tests/data/frag" --seeds 2 --until 100 2>&1)
rc=$?
[ $rc = 0 ] && echo "ok 1 - bench_frag ran, no device over-committed" ||
    { echo "not ok 1 - bench_frag exit $rc"; printf '# %s\n' "$out" | tail -5; }
mean() { printf '%s\n' "$out" | awk -v p="$1" '$1 == "summary" && $2 == p { print $7 }'; }
missing=""
for p in random dotprod packing clustering bestfit fgd fgd-share cpn; do
    [ -n "$(mean $p)" ] || missing="$missing $p"
done
[ -z "$missing" ] && echo "ok 2 - a summary per policy" || echo "not ok 2 - no summary for:$missing"
r=$(mean random) f=$(mean fgd) c=$(mean cpn)
if [ -n "$r" ] && [ -n "$f" ] && [ -n "$c" ] &&
    awk -v r="$r" -v f="$f" -v c="$c" 'BEGIN { exit !(f <= r && c <= r) }'; then
    echo "ok 3 - fgd ($f %) and cpn ($c %) leave no more GPUs unallocated than random ($r %)"
else
    echo "not ok 3 - unallocated at 100 %: random '$r' fgd '$f' cpn '$c'"
fi
