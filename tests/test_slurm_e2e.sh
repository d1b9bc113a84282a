#!/usr/bin/env bash
# test_slurm_e2e.sh - a lease becomes a Slurm reservation, end to end: a real Slurm cluster
# (tests/slurm_cluster.sh: c1 c2 with gpu:h100:2, c3 c4 with gpu:a100:2), a real cpn-broker,
# a real cpn-peer whose packages are Slurm node sets served by the slurm driver, and cpnctl as
# the tenant. TAP output. Cases:
#   1. a request by capability -> LEASE; its sealed access details name reservation cpn-<id>
#   2. the tenant's `sbatch --reservation`, as its mapped Unix user, runs on the leased node
#   3. a job of another user is refused in that reservation
#   4. renew moves the reservation's end
#   5. a node set DOWN: the package shrinks in the next AD (cpnctl offers)
#   6. release: the reservation is gone
#   7. kill -9 of the peer while the reservation is being created (the scontrol wrapper holds
#      it) and 8. before it is created: after a restart every reservation of cpn has a lease
#      active or provisioning, and every active lease of the driver has its reservation.
#   9. the peer and the broker stop cleanly on SIGTERM (exit 0: no sanitizer report).
#  10. conf/peer-slurm.yaml passes `cpn-peer --check`; a bad node set is refused, naming it.
# Every wait is bounded and waits for a positive event. Runs as root (slurmd, runuser).
# CPN_TEST_KEEP=1 keeps the directory; CPN_VALGRIND=1 runs the peer under valgrind. Prints
# how long each part took.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${CPN_BUILDDIR:-$SRC/build}
T0=$(date +%s%N)
n=0
failed=0
echo "1..10"
ok() { n=$((n + 1)); echo "ok $n - $* (at $(( ($(date +%s%N) - T0) / 1000000 )) ms)"; }
nok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
check() { # description command...
    local d=$1; shift
    if "$@"; then ok "$d"; else nok "$d" "failed: $*"; fi
}
wait_for() { # seconds command...: true once it succeeds (bounded in time and in tries)
    local end=$(($(date +%s) + $1)) k; shift
    for ((k = 0; k < 1000; k++)); do
        "$@" && return 0
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.1
    done
    return 1
}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-slurm-e2e.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
chmod 755 "$DIR"
BROKER_PID="" PEER_PID=""
stop_pid() { # pid: TERM, bounded wait, KILL
    local p=$1 k
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for ((k = 0; k < 50; k++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
}
cleanup() {
    stop_pid "$PEER_PID"; stop_pid "$BROKER_PID"
    [ -f "$DIR/wrapper.pid" ] && kill -KILL "$(cat "$DIR/wrapper.pid")" 2>/dev/null
    "$SRC/tests/slurm_cluster.sh" stop "$DIR/slurm"
    if [ "$failed" = 0 ] && [ "${CPN_TEST_KEEP:-0}" != 1 ]; then
        rm -rf "$DIR"
    else
        echo "# kept $DIR"
    fi
}
trap cleanup EXIT

if ! "$SRC/tests/slurm_cluster.sh" start "$DIR/slurm" --owner $$ >"$DIR/cluster.out" 2>&1; then
    echo "Bail out! no Slurm cluster: $(tail -3 "$DIR/cluster.out" | tr '\n' ' ')"
    exit 1
fi
echo "# $(cat "$DIR/cluster.out")"
export SLURM_CONF=$DIR/slurm/etc/slurm.conf TZ=UTC0
CTL=$BIN/cpnctl
for k in broker peer acme; do "$CTL" keygen --out "$DIR/$k" >/dev/null || exit 1; done
KID=$(head -c 10 "$DIR/acme.pub")
PORT=""
for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { PORT=$p; break; }
done

# scontrol as the driver runs it: the real one, except that a create may be held (kill -9 test)
cat >"$DIR/scontrol" <<EOF
#!/bin/sh
# holds "create" while $DIR/hold-before or $DIR/hold-after exists (bounded: 60 s)
case "\$*" in *" create "*|"create "*) ;; *) exec scontrol "\$@" ;; esac
hold() { echo \$\$ >"$DIR/wrapper.pid"; : >"$DIR/held-\$1"; i=0
         while [ -e "$DIR/hold-\$1" ] && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i+1)); done; }
[ -e "$DIR/hold-before" ] && hold before
scontrol "\$@"; rc=\$?
[ -e "$DIR/hold-after" ] && hold after
exit \$rc
EOF
chmod 755 "$DIR/scontrol"

cat >"$DIR/policy.yaml" <<EOF
broker:
  name: test-broker
  key: broker.key
  listen: tcp://127.0.0.1:$PORT
  ledger: ledger.db
  transport:
    curve: true
peers:
  trusted:
    - name: slurm-dc
      key: peer.pub
tenants:
  - name: acme
    key: acme.pub
    operator: true
    quota:
      accelerators: 64
      units: 8
      spend_rate: "100000.0"
limits:
  claim_timeout: 10s
EOF
cat >"$DIR/peer.yaml" <<EOF
name: slurm-dc
key: peer.key
database: peer.db
region: cn-east
refresh: 1s
brokers:
  - endpoint: tcp://127.0.0.1:$PORT
    key: broker.pub
    curve: true
tenants: any
packages:
  - id: h100-node
    count: 2
    price: "20.0"
    cores: 8
    memory: 15GiB
    accelerators: {vendor: nvidia, model: H100-80GB, count: 2, memory: 80GiB, bf16_tflops: 989}
  - id: a100-node
    count: 2
    price: "10.0"
    cores: 8
    memory: 15GiB
    accelerators: {vendor: nvidia, model: A100-80GB, count: 2, memory: 80GiB, bf16_tflops: 312}
provision:
  drivers:
    - name: slurm
      type: slurm
      timeout: 20s
      retries: 2
      backoff: 1s
      inventory: 1s
      options:
        cluster: cpntest
        login: 127.0.0.1:22
        users: "$KID=daemon"
        slurm_conf: $SLURM_CONF
        scontrol: $DIR/scontrol
        set.h100-node: "partition=gpu feature=h100"
        set.a100-node: "gres=a100"
  packages:
    h100-node: slurm
    a100-node: slurm
EOF
# by capability: >= 1,500 BF16 TFLOPS a unit: only the H100 node (2 x 989) qualifies
req() { # id
    printf 'id: %s\nunits: 1\nduration: 1h\naccelerators:\n  min_bf16_tflops: 1500\n' "$1" \
        >"$DIR/$1.yaml"
}
"$BIN/cpn-broker" --config "$DIR/policy.yaml" 2>>"$DIR/broker.log" & BROKER_PID=$!
# CPN_VALGRIND=1: the peer runs under valgrind (an error or a definite leak fails case 9)
VG=()
[ "${CPN_VALGRIND:-0}" = 1 ] &&
    VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
start_peer() {
    "${VG[@]}" "$BIN/cpn-peer" --config "$DIR/peer.yaml" 2>>"$DIR/peer.log" &
    PEER_PID=$!
}
start_peer
export CPN_BROKER=tcp://127.0.0.1:$PORT CPN_BROKER_KEY=$DIR/broker.pub CPN_KEY=$DIR/acme.key
offer_free() { # package: its free units in the broker's book ("" if absent)
    "$CTL" --json -t 2 offers 2>/dev/null | tr -d ' \n' |
        grep -o "\"package\":\"$1\"[^}]*" | grep -o '"free":[0-9]*' | head -1 | cut -d: -f2
}
offer_is() { [ "$(offer_free "$1")" = "$2" ]; }
offer_some() { [ "$(offer_free "$1")" -ge 1 ] 2>/dev/null; }
if ! wait_for 60 offer_is h100-node 2; then # 60 s: the peer may run under valgrind
    echo "Bail out! the broker never saw the peer's offer: $("$CTL" --json -t 2 offers 2>&1 |
        head -c 600 | tr '\n' ' ')"
    failed=1
    exit 1
fi

# 1. request by capability -> lease -> reservation named in the sealed access details
req job1
t1=$(date +%s%N)
"$CTL" -o "$DIR" -t 30 submit "$DIR/job1.yaml" >"$DIR/submit1.out" 2>&1
rc=$?
echo "# request to lease: $(( ($(date +%s%N) - t1) / 1000000 )) ms"
LEASE=$(ls "$DIR"/job1*.lease 2>/dev/null | head -1)
LID=$(awk '$2 == "job1" {print $1}' "$DIR/submit1.out")
RESV=cpn-$LID
NODE=$(scontrol show reservation -o "$RESV" 2>/dev/null | grep -o ' Nodes=[^ ]*' | cut -d= -f2)
# the access details the driver made, sealed to the tenant in the LEASE
access_ok=1
if "$CTL" access "$LEASE" >"$DIR/access1.json" 2>&1; then
    grep -q "\"reservation\": *\"$RESV\"" "$DIR/access1.json" &&
        grep -q '"user": *"daemon"' "$DIR/access1.json" &&
        grep -q "\"nodes\": *\[ *\"$NODE\" *\]" "$DIR/access1.json" || access_ok=0
else
    access_ok=0
fi
if [ "$rc" = 0 ] && [ -n "$LID" ] && [ "$access_ok" = 1 ] &&
    scontrol show reservation -o "$RESV" | grep -q ' Users=daemon ' &&
    { [ "$NODE" = c1 ] || [ "$NODE" = c2 ]; }; then
    ok "request by capability -> lease -> reservation $RESV on $NODE for user daemon"
else
    nok "request by capability -> lease -> reservation" "submit exit $rc" \
        "$(tr '\n' ' ' <"$DIR/submit1.out")" "access: $(tr '\n' ' ' <"$DIR/access1.json")"
fi

# 2. the tenant's job runs on the leased node, as its user
job=$(cd "$DIR/slurm/jobs" && runuser -u daemon -- sbatch --parsable --reservation="$RESV" \
    -o /dev/null --wrap 'sleep 300' 2>&1)
t2=$(date +%s%N)
runs() { [ "$(squeue -h -j "$job" -o %T 2>/dev/null)" = RUNNING ]; }
wait_for 30 runs
echo "# sbatch to running: $(( ($(date +%s%N) - t2) / 1000000 )) ms"
where=$(squeue -h -j "$job" -o '%N %u %T' 2>&1)
check "the tenant's sbatch --reservation=$RESV runs on $NODE as daemon ($where)" \
    test "$where" = "$NODE daemon RUNNING"

# 3. another user is refused there
out=$(cd "$DIR/slurm/jobs" && runuser -u bin -- sbatch --reservation="$RESV" -o /dev/null \
    --wrap 'sleep 1' 2>&1)
check "another user's job is refused in $RESV" \
    grep -q "Access denied to requested reservation" <<<"$out"

# 4. renew moves the reservation's end
end0=$(scontrol show reservation -o "$RESV" | grep -o 'EndTime=[^ ]*')
"$CTL" -t 30 renew "$LEASE" 2h >"$DIR/renew.out" 2>&1
end_moved() {
    e=$(scontrol show reservation -o "$RESV" | grep -o 'EndTime=[^ ]*')
    [ "$e" != "$end0" ]
}
if wait_for 10 end_moved; then
    ok "renew moves the reservation's end ($end0 -> $e)"
else
    nok "renew moves the reservation's end" "$end0 unchanged" "$(cat "$DIR/renew.out")"
fi

# 5. the other H100 node DOWN: the package shrinks in the next AD
other=c1; [ "$NODE" = c1 ] && other=c2
scontrol update nodename=$other state=down reason=cpn-test
t5=$(date +%s%N)
if wait_for 20 offer_is h100-node 0; then
    ok "node $other DOWN: h100-node has 0 free in the next AD" \
        "($(( ($(date +%s%N) - t5) / 1000000 )) ms)"
else
    nok "node $other DOWN: h100-node shrinks in the next AD" "free: $(offer_free h100-node)"
fi
scontrol update nodename=$other state=resume 2>/dev/null

# 6. release: the reservation is gone (the job in it cancelled)
"$CTL" -t 30 release "$LEASE" >"$DIR/release.out" 2>&1
gone() { ! scontrol show reservation -o "$RESV" >/dev/null 2>&1; }
check "release: reservation $RESV is gone" wait_for 20 gone

# 7, 8. kill -9 of the peer while provisioning; the invariant after the restart
invariant() { # every cpn- reservation has a live lease; every active driven lease its reservation
    local resv leases r l bad=""
    resv=$(scontrol show reservation -o 2>/dev/null | grep -o '^ReservationName=cpn-[^ ]*' |
        cut -d- -f2- | sort)
    leases=$(sqlite3 "$DIR/peer.db" \
        "SELECT lease_id FROM leases WHERE driver != '' AND
         (state IN ('active', 'provisioning') OR teardown = 1)" |
        sort)
    for r in $resv; do grep -qx "$r" <<<"$leases" || bad="$bad orphan:$r"; done
    for l in $(sqlite3 "$DIR/peer.db" \
        "SELECT lease_id FROM leases WHERE driver != '' AND state = 'active' AND teardown = 0"); do
        grep -qx "$l" <<<"$resv" || bad="$bad missing:$l"
    done
    [ -z "$bad" ] || { echo "# invariant:$bad"; return 1; }
}
settled() { # nothing provisioning, nothing due a teardown, and the invariant holds
    [ "$(sqlite3 "$DIR/peer.db" \
        "SELECT COUNT(*) FROM leases WHERE state = 'provisioning' OR teardown = 1")" = 0 ] &&
        invariant >/dev/null
}
kill9() { # where (before|after) id
    local where=$1 id=$2 t
    wait_for 20 offer_some h100-node # the broker has seen the node back
    : >"$DIR/hold-$where"
    rm -f "$DIR/held-$where" "$DIR/wrapper.pid"
    req "$id"
    "$CTL" -o "$DIR" -t 60 submit "$DIR/$id.yaml" >"$DIR/submit-$id.out" 2>&1 &
    local sub=$!
    if ! wait_for 30 test -e "$DIR/held-$where"; then
        nok "kill -9 $where the reservation is created" "the create was never held"
        rm -f "$DIR/hold-$where"; wait $sub; return
    fi
    kill -KILL "$PEER_PID"; wait "$PEER_PID" 2>/dev/null
    kill -KILL "$(cat "$DIR/wrapper.pid")" 2>/dev/null # the held scontrol: its create ran or not
    rm -f "$DIR/hold-$where"
    t=$(date +%s%N)
    start_peer
    local state
    if wait_for 30 settled; then
        wait $sub; local rc=$?
        state=$(sqlite3 "$DIR/peer.db" "SELECT state FROM leases WHERE request_id = '$id'")
        ok "kill -9 $where the create, restart: no orphan reservation, no lease without one" \
            "(lease $state, cpnctl exit $rc, settled in $(( ($(date +%s%N) - t) / 1000000 )) ms)"
    else
        nok "kill -9 $where the create, restart: invariant" "$(invariant)" \
            "$(sqlite3 "$DIR/peer.db" "SELECT lease_id, state, teardown FROM leases")"
        wait $sub
    fi
}
kill9 after job2
kill9 before job3

stopped() { # pid name: SIGTERM, its own exit status (a sanitizer's report makes it non-zero)
    local p=$1 k
    kill -TERM "$p" 2>/dev/null
    for ((k = 0; k < 100; k++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    wait "$p"
}
stopped "$PEER_PID"; prc=$?
stopped "$BROKER_PID"; brc=$?
PEER_PID="" BROKER_PID=""
if [ "$prc" = 0 ] && [ "$brc" = 0 ]; then
    ok "cpn-peer and cpn-broker exit 0 on SIGTERM"
else
    nok "cpn-peer and cpn-broker exit 0 on SIGTERM" "peer $prc, broker $brc" \
        "$(grep -h -A5 'Sanitizer\|runtime error' "$DIR/peer.log" "$DIR/broker.log" | head -20)"
fi

mkdir -p "$DIR/example" && cp "$SRC/conf/peer-slurm.yaml" "$DIR/example/" &&
    cp "$DIR/peer.key" "$DIR/broker.pub" "$DIR/example/"
good=$("$BIN/cpn-peer" --config "$DIR/example/peer-slurm.yaml" --check 2>&1)
grc=$?
sed -i 's/feature=h100"/feature=h100 colour=blue"/' "$DIR/example/peer-slurm.yaml"
bad=$("$BIN/cpn-peer" --config "$DIR/example/peer-slurm.yaml" --check 2>&1)
brc=$?
if [ "$grc" = 0 ] && [ "$brc" != 0 ] && grep -q 'peer-slurm.yaml:[0-9]*:[0-9]*: .*colour=blue' <<<"$bad"
then
    ok "conf/peer-slurm.yaml passes --check; a bad node set is refused with its line"
else
    nok "conf/peer-slurm.yaml --check" "good: $grc $good" "bad: $brc $bad"
fi

echo "# total $(( ($(date +%s%N) - T0) / 1000000 )) ms"
[ "$failed" = 0 ] || { echo "# peer log:"; tail -30 "$DIR/peer.log" | sed 's/^/#   /'; }
exit 0
