#!/usr/bin/env bash
# test_units.sh - systemd's own unit verifier accepts systemd/cpn-broker.service and
# cpn-peer.service (TAP). The units are made from their .in files as Makefile.am makes them,
# with this build's programs as @bindir@ (so ExecStart= names executables that exist) and the
# pages of docs/man on MANPATH (so Documentation=man:... resolves); `systemd-analyze verify`
# then loads them against the real system's units. A unit with a typo must be refused, or the
# verifier proves nothing here. Last, systemd's exposure score of the units' hardening. systemd (systemd-analyze) and man-db (man) are installed with
# apt-get if missing.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${CPN_BUILDDIR:-$SRC/build}
. "$SRC/scripts/lib/deps.sh"
echo "1..5"
if ! cpn_install_pkgs systemd man-db >&2; then
    for i in 1 2 3 4 5; do echo "not ok $i - systemd and man-db could not be installed"; done
    exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-units.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/units" "$dir/man/man1" "$dir/man/man8"
cp "$SRC"/docs/man/*.1 "$dir/man/man1/" && cp "$SRC"/docs/man/*.8 "$dir/man/man8/"
n=0
for u in cpn-broker cpn-peer; do
    n=$((n + 1))
    sed -e "s|@bindir[@]|$BUILD|g" -e "s|@sysconfdir[@]|$dir/etc|g" \
        "$SRC/systemd/$u.service.in" >"$dir/units/$u.service"
    out=$(cd "$dir/units" && MANPATH="$dir/man" systemd-analyze verify "$u.service" 2>&1)
    rc=$?
    if [ "$rc" = 0 ] && [ -z "$out" ]; then echo "ok $n - systemd-analyze verify $u.service"
    else echo "not ok $n - systemd-analyze verify $u.service (exit $rc)"; printf '# %s\n' "$out"; fi
done

# what the units promise: notify, watchdog, a user of their own, a state directory, hardening
n=$((n + 1)); bad=""
for u in cpn-broker cpn-peer; do
    for kv in Type=notify WatchdogSec= "User=$u" "StateDirectory=$u" NoNewPrivileges=yes \
        ProtectSystem=strict PrivateTmp=yes ProtectHome=yes CapabilityBoundingSet= \
        "ExecStart=$BUILD/$u --config"; do
        grep -q "^$kv" "$dir/units/$u.service" || bad="$bad $u:$kv"
    done
done
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID' "$dir/units/cpn-broker.service" || bad="$bad broker:ExecReload"
grep -q '^ExecReload' "$dir/units/cpn-peer.service" && bad="$bad peer:ExecReload(the peer does not reload)"
if [ -z "$bad" ]; then echo "ok $n - both units say Type=notify, WatchdogSec, User, StateDirectory, hardening"
else echo "not ok $n - missing:$bad"; fi

# the verifier is not a rubber stamp
n=$((n + 1))
sed -e 's/^Type=notify/Type=notifyy/' -e 's/^WatchdogSec=30s/WatchdogSec=thirty/' \
    "$dir/units/cpn-broker.service" >"$dir/units/cpn-broken.service"
out=$(cd "$dir/units" && MANPATH="$dir/man" systemd-analyze verify cpn-broken.service 2>&1)
if printf '%s' "$out" | grep -q "notifyy" && printf '%s' "$out" | grep -q "thirty"; then
    echo "ok $n - systemd-analyze verify names both typos of a broken unit"
else echo "not ok $n - a broken unit passed: $out"; fi

# systemd's own exposure score of the hardening (0 best .. 10 worst): 1.7 for both when
# written; a unit that loses its sandboxing (say ProtectSystem=strict) scores above 2.5
n=$((n + 1)); bad=""
for u in cpn-broker cpn-peer; do
    out=$(cd "$dir/units" && systemd-analyze security --offline=true "$u.service" 2>&1)
    score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.5) }' || bad="$bad $u:${score:-none}"
done
if [ -z "$bad" ]; then echo "ok $n - systemd-analyze security: exposure at most 2.5 for both units"
else echo "not ok $n - exposure too high:$bad"; fi
