#!/usr/bin/env bash
# test_systemd.sh - the units under a real systemd (TAP).
#
# Boots systemd as PID 1 of a throwaway container (systemd-nspawn --volatile=yes: a tmpfs root
# over this machine's /usr, its own network namespace), with this build's programs at
# /opt/cpn/bin, cpn-broker.service and cpn-peer.service made from systemd/*.service.in for
# that path, their users made by systemd-sysusers, /etc/cpn holding the packaged example
# configs (conf/service/) and keys made as they say. A test unit inside, started after both,
# checks what only a real service manager shows, and writes TAP lines this script prints:
#   1. both units reach active/running (Type=notify: only after READY=1), under their users,
#      with their StatusText (STATUS=) and a StateDirectory owned by them, hardening applied;
#   2. the installed cpnctl gets a lease through them and verifies it;
#   3. `systemctl reload cpn-broker` (RELOADING=1 ... READY=1) succeeds and says so in
#      StatusText; a broken policy's reload is refused and the broker stays active;
#   4. the journal files the daemons' lines under their priorities (<6>, <3> prefixes);
#   5. a wedged loop (SIGSTOP) is caught by the watchdog (WatchdogSec shortened to 3 s by a
#      drop-in) and the broker is restarted.
# Every wait is bounded; the container powers itself off, or is killed after CONTAINER_S.
# Needs root; systemd-container (systemd-nspawn) is installed with apt-get if missing.
#
# Usage: tests/test_systemd.sh --build DIR     (DIR: a build directory with the programs)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: $0 --build DIR" >&2; exit 2 ;;
    esac
done
[ -n "$BUILD" ] && [ -x "$BUILD/cpn-broker" ] || { echo "usage: $0 --build DIR" >&2; exit 2; }
. "$SRC/scripts/lib/deps.sh"
CONTAINER_S=300 # the whole container run, boot to poweroff (a bound, not a timing)
PLAN=5
echo "1..$PLAN"
bail() { echo "Bail out! $1"; exit 1; }
[ "$(id -u)" = 0 ] || bail "needs root (systemd-nspawn)"
cpn_install_pkgs systemd systemd-container >&2 || bail "could not install systemd-container"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-systemd.XXXXXX") || bail "mktemp"
machine=cpn-test-$$
pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && sleep 1 && kill -KILL "$pid" 2>/dev/null
    if [ "${CPN_TEST_KEEP:-0}" = 1 ] || [ "${failed:-1}" != 0 ]; then echo "# kept $dir" >&2
    else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- what the container sees ----
mkdir -p "$dir/system/multi-user.target.wants" "$dir/system/cpn-broker.service.d" \
    "$dir/etc-cpn" "$dir/out" "$dir/test"
for u in cpn-broker cpn-peer; do
    sed -e "s|@bindir[@]|/opt/cpn/bin|g" -e "s|@sysconfdir[@]|/etc|g" \
        "$SRC/systemd/$u.service.in" >"$dir/system/$u.service"
    ln -s "../$u.service" "$dir/system/multi-user.target.wants/$u.service"
done
printf '[Service]\n# the test: a wedge is caught in 3 s, not 30\nWatchdogSec=3s\n' \
    >"$dir/system/cpn-broker.service.d/watchdog.conf"
cat >"$dir/system/cpn-test.service" <<'EOF'
[Unit]
Description=cpn: the test inside the container
After=cpn-broker.service cpn-peer.service

[Service]
Type=oneshot
ExecStart=/bin/bash /opt/cpn/test/inner.sh
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal
EOF
ln -s ../cpn-test.service "$dir/system/multi-user.target.wants/cpn-test.service"
# fixed ids, so the keys can be given to the users before they exist
printf 'u cpn-broker 990 "cpn broker daemon" /var/lib/cpn-broker\nu cpn-peer 991 "cpn peer daemon" /var/lib/cpn-peer\n' \
    >"$dir/sysusers.conf"
cp "$SRC/conf/service/policy.yaml" "$SRC/conf/service/peer.yaml" "$dir/etc-cpn/"
for k in broker peer; do "$BUILD/cpnctl" keygen --out "$dir/etc-cpn/$k" >/dev/null || bail keygen; done
"$BUILD/cpnctl" keygen --out "$dir/test/tenant" >/dev/null && cp "$dir/test/tenant.pub" "$dir/etc-cpn/" ||
    bail keygen
chown 990:990 "$dir/etc-cpn/broker.key" && chown 991:991 "$dir/etc-cpn/peer.key"

cat >"$dir/test/inner.sh" <<'EOF'
# inner.sh - runs inside the container as the unit cpn-test.service; TAP lines to /opt/cpn/out
OUT=/opt/cpn/out/tap; n=0
ok() { n=$((n + 1)); echo "ok $n - $1" >>"$OUT"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1" >>"$OUT"; shift; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /' >>"$OUT"; done; }
prop() { systemctl show -p "$2" --value "$1"; }
wait_active() { # UNIT SECONDS
    for _ in $(seq 1 $(($2 * 10))); do
        [ "$(prop "$1" ActiveState)/$(prop "$1" SubState)" = active/running ] && return 0
        sleep 0.1
    done
    return 1
}
export PATH=/opt/cpn/bin:$PATH CPN_BROKER=tcp://127.0.0.1:7400 CPN_BROKER_KEY=/etc/cpn/broker.pub \
    CPN_KEY=/opt/cpn/test/tenant.key

# 1. active under notify, users, status, state directory, sandbox
bad=""
for u in cpn-broker cpn-peer; do
    wait_active "$u" 60 || bad="$bad $u:$(prop "$u" ActiveState)/$(prop "$u" Result)"
    pid=$(prop "$u" MainPID)
    [ "$(stat -c %U "/proc/$pid" 2>/dev/null)" = "$u" ] || bad="$bad $u:user"
    [ -n "$(prop "$u" StatusText)" ] || bad="$bad $u:no-StatusText"
    [ "$(stat -c %U "/var/lib/$u" 2>/dev/null)" = "$u" ] || bad="$bad $u:StateDirectory"
    grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || bad="$bad $u:NoNewPrivs"
    grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || bad="$bad $u:seccomp"
    grep -q '^CapEff:[[:space:]]*0000000000000000' "/proc/$pid/status" || bad="$bad $u:capabilities"
done
if [ -z "$bad" ]; then
    ok "both units active/running after READY=1, as their users, StatusText '$(prop cpn-broker StatusText)', StateDirectory, NoNewPrivileges, seccomp, no capabilities"
else not_ok "units:$bad" "$(journalctl -b --no-pager -n 40 -u cpn-broker -u cpn-peer)"; fi

# 2. a lease
seen=0
for _ in $(seq 1 300); do cpnctl offers 2>/dev/null | grep -q cpu16 && { seen=1; break; }; sleep 0.1; done
printf 'id: sd-1\nunits: 1\nduration: 1h\ncores: 16\n' >/tmp/req.yaml
if [ "$seen" = 1 ] && out=$(cd /tmp && cpnctl submit req.yaml 2>&1) && cpnctl verify /tmp/sd-1.lease >/dev/null 2>&1; then
    ok "cpnctl got lease sd-1 through both services and verified it"
else not_ok "a lease through the services" "${out:-no offers}" "$(journalctl -b --no-pager -n 20 -u cpn-peer)"; fi

# 3. reload: taken, then refused
systemctl reload cpn-broker; r1=$?; st1=$(prop cpn-broker StatusText)
cp /etc/cpn/policy.yaml /tmp/policy.good && echo 'broker: [not a policy' >/etc/cpn/policy.yaml
systemctl reload cpn-broker; r2=$?; st2=$(prop cpn-broker StatusText); act=$(prop cpn-broker ActiveState)
cp /tmp/policy.good /etc/cpn/policy.yaml
case "$r1:$st1:$st2:$act" in
0:policy\ reloaded*:*refused*:active) ok "systemctl reload: '$st1'; a broken policy: '$st2', still active" ;;
*) not_ok "reload: exit $r1, '$st1'; broken: exit $r2, '$st2', $act" ;;
esac

# 4. priorities in the journal
info=$(journalctl -b --no-pager -u cpn-broker -p info..info -o cat | grep -m1 'listening on')
err=$(journalctl -b --no-pager -u cpn-broker -p err..err -o cat | grep -m1 'reload of')
case "$info|$err" in
info*listening\ on*\|error*reload\ of*refused*) ok "journal: '$info' at info, '$err' at err" ;;
*) not_ok "journal priorities: info '$info', err '$err'" "$(journalctl -b --no-pager -u cpn-broker -o verbose | grep -E 'PRIORITY|MESSAGE' | tail -12)" ;;
esac

# 5. a wedged loop: the watchdog kills it, systemd restarts it
pid=$(prop cpn-broker MainPID); restarts=$(prop cpn-broker NRestarts)
kill -STOP "$pid"
new=""
for _ in $(seq 1 300); do
    p=$(prop cpn-broker MainPID)
    if [ "$p" != "$pid" ] && [ "$p" != 0 ] && wait_active cpn-broker 1; then new=$p; break; fi
    sleep 0.1
done
wd=$(journalctl -b --no-pager -u cpn-broker -o cat | grep -m1 'Watchdog timeout')
if [ -n "$new" ] && [ -n "$wd" ] && [ "$(prop cpn-broker NRestarts)" -gt "$restarts" ]; then
    ok "SIGSTOP: '$wd'; restarted as pid $new, active again"
else not_ok "watchdog: new pid '${new}', '$wd'" "$(journalctl -b --no-pager -n 15 -u cpn-broker)"; fi
echo done >>/opt/cpn/out/finished
EOF

# ---- boot it ----
timeout -k 10 "$CONTAINER_S" systemd-nspawn -q -D / --volatile=yes --register=no --keep-unit \
    --private-network --machine="$machine" \
    --bind-ro="$BUILD:/opt/cpn/bin" --bind-ro="$dir/test:/opt/cpn/test" \
    --bind="$dir/out:/opt/cpn/out" --bind="$dir/etc-cpn:/etc/cpn" \
    --bind-ro="$dir/system:/etc/systemd/system" \
    --bind-ro="$dir/sysusers.conf:/etc/sysusers.d/cpn.conf" \
    -b --console=pipe </dev/null >"$dir/console.out" 2>&1 &
pid=$!
wait "$pid"; rc=$?; pid=""
failed=0
if [ ! -f "$dir/out/finished" ]; then
    echo "Bail out! the test inside the container did not finish (exit $rc)"
    tail -30 "$dir/console.out" | sed 's/^/# /'
    failed=1; exit 1
fi
cat "$dir/out/tap"
grep -q '^not ok' "$dir/out/tap" && failed=1
[ "$(grep -c '^\(not \)\{0,1\}ok' "$dir/out/tap")" = "$PLAN" ] || failed=1
[ "$failed" = 0 ]
