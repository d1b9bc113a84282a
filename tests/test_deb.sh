#!/usr/bin/env bash
# test_deb.sh - the Debian packages, built, checked, installed, used and purged (TAP).
#
#  1. `make dist` of a configured build directory, unpacked: the tarball alone builds
#     cpn-broker, cpn-peer and cpnctl with `dpkg-buildpackage -us -uc -b` (its debian/rules
#     runs the unit tests);
#  2. lintian reports no error;
#  3. apt-get installs the three .debs; the system users exist, the example configs are
#     conffiles under /etc/cpn, the units, programs and man pages are where they belong;
#  4. systemd-analyze verify accepts the installed units;
#  5. keys made as the installed configs say, both daemons run from the installed units'
#     ExecStart= lines as the units' users (their StateDirectory made as systemd makes it),
#     in a network namespace of their own so the example's fixed port 7400 is theirs
#     (--no-netns: on this host's 127.0.0.1, where 7400 must then be free);
#  6. the installed cpnctl gets a lease from them and verifies it offline;
#  7. purge removes the packages, their conffiles and state.
# What it made is undone on every exit: daemons stopped by PID, packages purged, keys, users
# and the namespace removed. It refuses to run if cpn packages or /etc/cpn are already there
# (not its to remove). Needs root. scripts/check runs it (CPN_DEB=0 leaves it out).
#
# Usage: tests/test_deb.sh --build DIR [--no-netns]   (DIR: a configured build directory)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD="" use_netns=1
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --no-netns) use_netns=0; shift ;;
    *) echo "usage: $0 --build DIR" >&2; exit 2 ;;
    esac
done
[ -n "$BUILD" ] && [ -f "$BUILD/Makefile" ] || { echo "usage: $0 --build DIR" >&2; exit 2; }
. "$SRC/scripts/lib/deps.sh"

START_S=30     # a daemon up / the first lease (a bound, not a timing)
STOP_S=30      # SIGTERM to exit
LOCK_S=600     # waiting for another apt/dpkg run to let go of the lock
PKGS="cpn-broker cpn-peer cpnctl"
NS=cpn-deb-$$
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do printf '# %s\n' "$l"; done; }
bail() { echo "Bail out! $1"; exit 1; }
echo "1..7"

[ "$(id -u)" = 0 ] || bail "needs root (dpkg -i, system users, a network namespace)"
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed &&
        bail "$p is installed already: purge it first (apt-get purge $PKGS)"
done
[ -e /etc/cpn ] && bail "/etc/cpn exists already: this test installs there; move it away first"
# users left by an earlier install (a purge keeps them, as Debian does) are not ours to delete
new_users=""
for u in cpn-broker cpn-peer; do getent passwd "$u" >/dev/null || new_users="$new_users $u"; done
cpn_install_pkgs debhelper dpkg-dev fakeroot lintian adduser systemd man-db iproute2 >&2 ||
    bail "could not install debhelper, lintian, ..."

dir=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-deb.XXXXXX") || bail "mktemp"
pids=() installed=0 netns=0
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 $((STOP_S * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    if [ "$installed" = 1 ]; then
        apt-get purge -y -qq -o DPkg::Lock::Timeout=$LOCK_S $PKGS >/dev/null 2>&1
        rm -f /etc/cpn/broker.key /etc/cpn/broker.pub /etc/cpn/peer.key /etc/cpn/peer.pub \
            /etc/cpn/tenant.pub
        rmdir /etc/cpn 2>/dev/null
        for u in $new_users; do
            getent passwd "$u" >/dev/null && deluser --quiet --system "$u" >/dev/null 2>&1
            getent group "$u" >/dev/null && delgroup --quiet --system "$u" >/dev/null 2>&1
        done
        rm -rf /var/lib/cpn-broker /var/lib/cpn-peer
    fi
    [ "$netns" = 1 ] && ip netns del "$NS" 2>/dev/null
    if [ "${CPN_TEST_KEEP:-0}" = 1 ] || [ "$failed" != 0 ]; then echo "# kept $dir" >&2
    else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- 1. build from the tarball ----
t0=$(date +%s)
ver=$(sed -n 's/^AC_INIT(\[cpn\], \[\([^]]*\)\].*/\1/p' "$SRC/configure.ac")
if make -s -C "$BUILD" dist-gzip >"$dir/dist.out" 2>&1 &&
    tar -xzf "$BUILD/cpn-$ver.tar.gz" -C "$dir" &&
    (cd "$dir/cpn-$ver" && DEB_BUILD_OPTIONS="parallel=$(nproc)" \
        dpkg-buildpackage -us -uc -b >"$dir/build.out" 2>&1); then
    ok "make dist; dpkg-buildpackage -us -uc -b built $(cd "$dir" && echo ./*.deb | wc -w) .debs in $(($(date +%s) - t0)) s"
else
    not_ok "make dist; dpkg-buildpackage -us -uc -b" "$(tail -30 "$dir/dist.out" "$dir/build.out" 2>/dev/null)"
    exit 1
fi
debs=()
for p in $PKGS; do debs+=("$dir/${p}_${ver}_$(dpkg --print-architecture).deb"); done

# ---- 2. lintian ----
if out=$(lintian --fail-on error "$dir/cpn_${ver}_$(dpkg --print-architecture).changes" 2>&1); then
    ok "lintian: no error ($(printf '%s\n' "$out" | grep -c '^W:') warnings)"
else
    not_ok "lintian reports errors" "$(printf '%s\n' "$out" | grep '^E:')"
fi

# ---- 3. install ----
installed=1
if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=$LOCK_S \
    "${debs[@]}" 2>&1); then
    not_ok "apt-get install the .debs" "$out"; exit 1
fi
bad=""
for u in cpn-broker cpn-peer; do
    getent passwd "$u" | grep -q ":/var/lib/$u:/usr/sbin/nologin$" || bad="$bad user:$u"
    [ -f "/lib/systemd/system/$u.service" ] || bad="$bad unit:$u"
    [ -x "/usr/bin/$u" ] || bad="$bad bin:$u"
    [ -f "/usr/share/man/man8/$u.8.gz" ] || bad="$bad man:$u"
done
[ -x /usr/bin/cpnctl ] && [ -f /usr/share/man/man1/cpnctl.1.gz ] || bad="$bad cpnctl"
dpkg-query -W -f='${Conffiles}' cpn-broker | grep -q '^ /etc/cpn/policy.yaml ' || bad="$bad conffile:policy"
dpkg-query -W -f='${Conffiles}' cpn-peer | grep -q '^ /etc/cpn/peer.yaml ' || bad="$bad conffile:peer"
if [ -z "$bad" ]; then ok "installed: users, units, programs, man pages; /etc/cpn/*.yaml are conffiles"
else not_ok "installed, but wrong:$bad"; fi

# ---- 4. the installed units ----
if out=$(systemd-analyze verify /lib/systemd/system/cpn-broker.service \
    /lib/systemd/system/cpn-peer.service 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify accepts the installed units"
else not_ok "systemd-analyze verify the installed units" "$out"; fi

# ---- 5. keys as the configs say, the daemons as their units say ----
(cpnctl keygen --out /etc/cpn/broker && chown cpn-broker: /etc/cpn/broker.key &&
    cpnctl keygen --out /etc/cpn/peer && chown cpn-peer: /etc/cpn/peer.key &&
    cpnctl keygen --out "$dir/tenant" && cp "$dir/tenant.pub" /etc/cpn/tenant.pub) \
    >"$dir/keygen.out" 2>&1 || { not_ok "keys" "$(cat "$dir/keygen.out")"; exit 1; }
IN=()
if [ "$use_netns" = 1 ]; then
    ip netns add "$NS" && netns=1 && ip -n "$NS" link set lo up || bail "cannot make a network namespace (try --no-netns)"
    IN=(ip netns exec "$NS")
fi
start_unit() { # NAME: the unit's ExecStartPre and ExecStart as its User, StateDirectory made
    local u=$1 pre cmd
    pre=$(sed -n 's/^ExecStartPre=//p' "/lib/systemd/system/$u.service")
    cmd=$(sed -n 's/^ExecStart=//p' "/lib/systemd/system/$u.service")
    install -d -m 0750 -o "$u" -g "$u" "/var/lib/$u"
    # shellcheck disable=SC2086
    "${IN[@]}" setpriv --reuid "$u" --regid "$u" --init-groups --no-new-privs -- \
        $pre >>"$dir/$u.log" 2>&1 || return 1
    # shellcheck disable=SC2086
    "${IN[@]}" setpriv --reuid "$u" --regid "$u" --init-groups --no-new-privs -- \
        $cmd >>"$dir/$u.log" 2>&1 &
    pids+=($!)
}
export CPN_BROKER=tcp://127.0.0.1:7400 CPN_BROKER_KEY=/etc/cpn/broker.pub CPN_KEY=$dir/tenant.key
up=1
start_unit cpn-broker && start_unit cpn-peer || up=0
# both up, the peer's AD in the broker's book (bounded)
seen=0
for _ in $(seq 1 $((START_S * 5))); do
    [ "$up" = 1 ] || break
    if "${IN[@]}" cpnctl offers 2>/dev/null | grep -q cpu16; then seen=1; break; fi
    sleep 0.2
done
if [ "$seen" = 1 ]; then
    ok "cpn-broker and cpn-peer run from the installed units and configs; the broker lists cpu16"
else
    not_ok "daemons from the installed files" "$(tail -20 "$dir/cpn-broker.log" "$dir/cpn-peer.log")"
fi

# ---- 6. a lease with the installed cpnctl ----
printf 'id: deb-1\nunits: 1\nduration: 1h\ncores: 16\n' >"$dir/req.yaml"
if out=$(cd "$dir" && "${IN[@]}" cpnctl submit req.yaml 2>&1) &&
    out2=$(cpnctl verify "$dir/deb-1.lease" 2>&1) &&
    ls -l /var/lib/cpn-peer/peer.db | grep -q ' cpn-peer cpn-peer '; then
    ok "cpnctl submit got lease deb-1; cpnctl verify accepts it; the peer's store is its user's"
else
    not_ok "a lease with the installed cpnctl" "$out" "${out2:-}" "$(tail -5 "$dir/cpn-peer.log")"
fi
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do
    for _ in $(seq 1 $((STOP_S * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
pids=()

# ---- 7. purge ----
rm -f /etc/cpn/broker.key /etc/cpn/broker.pub /etc/cpn/peer.key /etc/cpn/peer.pub /etc/cpn/tenant.pub
out=$(apt-get purge -y -qq -o DPkg::Lock::Timeout=$LOCK_S $PKGS 2>&1)
bad=""
for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed && bad="$bad $p"; done
for f in /etc/cpn /var/lib/cpn-broker /var/lib/cpn-peer /usr/bin/cpn-broker \
    /lib/systemd/system/cpn-peer.service; do
    [ -e "$f" ] && bad="$bad $f"
done
if [ -z "$bad" ]; then ok "apt-get purge removes packages, conffiles, /etc/cpn and the state"
else not_ok "after purge still there:$bad" "$out"; fi
echo "# deb test: $(($(date +%s) - t0)) s"
[ "$failed" = 0 ]
