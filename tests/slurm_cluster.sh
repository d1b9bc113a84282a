#!/usr/bin/env bash
# slurm_cluster.sh - a real Slurm cluster (Debian 12's 22.05) on 127.0.0.1 for the tests: a
# private munged (own key and socket), one slurmctld and NODES slurmd, all in one directory.
#
#   tests/slurm_cluster.sh start DIR [--nodes N] [--owner PID]
#   tests/slurm_cluster.sh stop DIR
#
# start installs what is missing (slurmctld slurmd slurm-client munge, with apt-get), writes
# DIR/etc/slurm.conf, starts the daemons, waits (bounded) until every node is idle and writes
# DIR/env (SLURM_CONF=...; source it, or pass SLURM_CONF to the programs that call scontrol).
# It exits 0 when the cluster is up, else 1 after stopping what it started. With --owner, a
# watchdog stops the cluster when process PID ends, so a test killed before its teardown
# leaves nothing behind.
#
# stop stops exactly what start started, by the PIDs recorded in DIR/pids/: the job steps
# first (slurmstepd ignores SIGTERM: they get SIGKILL, with the jobs' processes, recognised by
# holding a file of DIR open or by descending from such a step), then slurmctld and the
# slurmds, then munged; SIGKILL for any that outlives STOP_WAIT_S. It does not remove DIR.
#
# The cluster (why each odd setting):
#  * nodes c1..cN, partition `gpu` (all nodes, default) and `cpu` (the second half); the first
#    half has Gres=gpu:h100:2 Feature=h100, the second gpu:a100:2 Feature=a100. Debian builds
#    slurmd with multiple-slurmd support: each node is `slurmd -D -N cK` on its own port.
#  * SlurmdParameters=config_overrides: each slurmd reports the configured size, not this host's.
#  * GRES need device files: character devices (1,3: what /dev/null is) made with mknod.
#  * daemons run through links named exactly slurmctld/slurmd/slurmstepd: 22.05 decides what
#    it is from its program name (as slurmd-wlm it drops every GRES).
#  * ReturnToService=$RETURN_TO_SERVICE (env, default 2). With 2 a node set DOWN by hand goes
#    back to service at the next word from its slurmd (e.g. the end of the job Slurm requeued
#    when it went down), within milliseconds; scripts/demo-slurm sets 1, so its "node fails"
#    stays DOWN until `state=resume` and the peer's inventory sees it.
#  * a private munged; no slurmdbd, no accounting (reservations take users=, not accounts=,
#    unless accounting is there).
# Limits: START_WAIT_S for the whole start (default 60), STOP_WAIT_S per signal round (10).
set -uo pipefail

START_WAIT_S=${START_WAIT_S:-60}
STOP_WAIT_S=${STOP_WAIT_S:-10}
RETURN_TO_SERVICE=${RETURN_TO_SERVICE:-2}
PKGS="slurmctld slurmd slurm-client munge"
SBIN_CTLD=/usr/sbin/slurmctld-wlm
SBIN_SLURMD=/usr/sbin/slurmd-wlm
SBIN_STEPD=/usr/sbin/slurmstepd-wlm
MUNGED=/usr/sbin/munged

say() { echo "slurm_cluster: $*" >&2; }

install_pkgs() {
    local need="" p hook=/usr/sbin/policy-rc.d made=0
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
    done
    [ -z "$need" ] && return 0
    [ "$(id -u)" = 0 ] || { say "missing:$need (run as root)"; return 1; }
    say "installing:$need"
    # keep the packages' own services from starting: we run private daemons
    [ -e $hook ] || { printf '#!/bin/sh\nexit 101\n' >$hook && chmod 755 $hook && made=1; }
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need; } >/dev/null
    local rc=$?
    [ $made = 1 ] && rm -f $hook
    return $rc
}

# A base port with $1 free ports from it on 127.0.0.1 (below the ephemeral range).
free_ports() {
    /usr/bin/python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
def free(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(50):
    b = random.randrange(12000, 32000 - n)
    if all(free(p) for p in range(b, b + n)):
        print(b); sys.exit(0)
sys.exit(1)
EOF
}

write_conf() { # DIR NODES PORT0
    local d=$1 n=$2 p0=$3 host half i
    host=$(hostname -s)
    half=$((n / 2)); [ "$half" -lt 1 ] && half=1
    mkdir -p "$d"/{etc,state,log,spool,munge,dev,bin,run,pids,jobs} || return 1
    # the tenants' Unix users run sbatch: they read slurm.conf and reach munged's socket
    chmod 755 "$d" "$d/etc" "$d/munge"
    chmod 1777 "$d/jobs" # job output of the tenants' Unix users
    for i in 0 1; do [ -c "$d/dev/gpu$i" ] || mknod "$d/dev/gpu$i" c 1 3 || return 1; done
    ln -sfn $SBIN_CTLD "$d/bin/slurmctld"
    ln -sfn $SBIN_SLURMD "$d/bin/slurmd"
    ln -sfn $SBIN_STEPD "$d/bin/slurmstepd"
    local nodeopt="NodeHostname=$host NodeAddr=127.0.0.1 CPUs=8 Boards=1 SocketsPerBoard=1"
    nodeopt="$nodeopt CoresPerSocket=8 ThreadsPerCore=1 RealMemory=16000 State=UNKNOWN"
    {
        echo "# written by tests/slurm_cluster.sh"
        echo "ClusterName=cpntest"
        echo "SlurmctldHost=$host(127.0.0.1)"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$d/munge/munge.sock"
        echo "SlurmctldPort=$((p0 - 1))"
        echo "SlurmdPort=$p0"
        echo "StateSaveLocation=$d/state"
        echo "SlurmdSpoolDir=$d/spool/%n"
        echo "SlurmctldPidFile=$d/run/slurmctld.pid"
        echo "SlurmdPidFile=$d/run/slurmd.%n.pid"
        echo "SlurmctldLogFile=$d/log/slurmctld.log"
        echo "SlurmdLogFile=$d/log/slurmd.%n.log"
        echo "SlurmctldDebug=info"
        echo "SlurmdDebug=info"
        echo "MailProg=/bin/true"
        echo "ProctrackType=proctrack/pgid"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "MpiDefault=none"
        echo "SwitchType=switch/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        echo "SchedulerType=sched/backfill"
        echo "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000"
        echo "PriorityType=priority/basic"
        echo "GresTypes=gpu"
        echo "SlurmdParameters=config_overrides"
        echo "ReturnToService=$RETURN_TO_SERVICE"
        echo "MinJobAge=300"
        echo "SlurmdTimeout=300"
        echo "KillWait=2"
        echo "NodeName=c[1-$half] Port=[$p0-$((p0 + half - 1))]" \
            "Gres=gpu:h100:2 Feature=h100 $nodeopt"
        [ "$n" -gt "$half" ] &&
            echo "NodeName=c[$((half + 1))-$n] Port=[$((p0 + half))-$((p0 + n - 1))]" \
                "Gres=gpu:a100:2 Feature=a100 $nodeopt"
        echo "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
        [ "$n" -gt "$half" ] &&
            echo "PartitionName=cpu Nodes=c[$((half + 1))-$n] MaxTime=INFINITE State=UP"
    } >"$d/etc/slurm.conf"
    {
        echo "NodeName=c[1-$half] Name=gpu Type=h100 File=$d/dev/gpu[0-1]"
        [ "$n" -gt "$half" ] &&
            echo "NodeName=c[$((half + 1))-$n] Name=gpu Type=a100 File=$d/dev/gpu[0-1]"
    } >"$d/etc/gres.conf"
    for i in $(seq 1 "$n"); do mkdir -p "$d/spool/c$i"; done
    echo "SLURM_CONF=$d/etc/slurm.conf" >"$d/env"
}

spawn() { # DIR ROLE argv...: start in its own session, record the PID
    local d=$1 role=$2
    shift 2
    setsid "$@" </dev/null >>"$d/log/$role.out" 2>&1 &
    echo $! >>"$d/pids/$role"
}

alive_any() { # pid files...
    local p
    for p in $(cat "$@" 2>/dev/null); do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}

signal_wait() { # SIG SECONDS pidfile...: signal, wait until all are gone (bounded)
    local sig=$1 secs=$2 p k
    shift 2
    for p in $(cat "$@" 2>/dev/null); do kill -"$sig" "$p" 2>/dev/null; done
    for ((k = 0; k < secs * 10; k++)); do
        alive_any "$@" || return 0
        sleep 0.1
    done
    return 1
}

# Job steps of this cluster and their processes: slurmstepd (it ignores SIGTERM and outlives
# slurmd) holding a file under DIR open, and every descendant of such a step.
steps_of() { # DIR
    local d=$1 p f
    for p in $(pgrep -x slurmstepd 2>/dev/null); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = $SBIN_STEPD ] || continue
        for f in /proc/"$p"/fd/*; do
            case $(readlink "$f" 2>/dev/null) in "$d"/*) echo "$p"; break ;; esac
        done
    done
}

descendants() { # PID...
    local p
    for p in "$@"; do
        for c in $(pgrep -P "$p" 2>/dev/null); do echo "$c"; descendants "$c"; done
    done
}

stop() { # DIR
    local d=$1 k s
    [ -d "$d/pids" ] || return 0
    # steps first (a slurmd with live steps is slow to stop), then the daemons together:
    # slurmctld alone takes about 3 s to save its state and go
    for ((k = 0; k < 5; k++)); do
        s=$(steps_of "$d")
        [ -z "$s" ] && break
        # shellcheck disable=SC2086,SC2046 # lists of PIDs: split on purpose
        echo $s $(descendants $s) | tr ' ' '\n' >"$d/pids/steps"
        signal_wait KILL 5 "$d/pids/steps"
    done
    signal_wait TERM "$STOP_WAIT_S" "$d/pids/slurmctld" "$d/pids/slurmd" ||
        signal_wait KILL 5 "$d/pids/slurmctld" "$d/pids/slurmd"
    signal_wait TERM "$STOP_WAIT_S" "$d/pids/munged" || signal_wait KILL 5 "$d/pids/munged"
    [ -f "$d/pids/watchdog" ] && [ "$(cat "$d/pids/watchdog")" != "${WATCHDOG_SELF:-}" ] &&
        kill "$(cat "$d/pids/watchdog")" 2>/dev/null
    rm -f "$d/pids/slurmctld" "$d/pids/slurmd" "$d/pids/munged" "$d/pids/steps" \
        "$d/pids/watchdog"
}

wait_for() { # SECONDS command...: true once the command succeeds (bounded)
    local secs=$1 k
    shift
    for ((k = 0; k < secs * 5; k++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

all_idle() { # N
    [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$1" ]
}

start() { # DIR NODES OWNER
    local d=$1 n=$2 owner=$3 base t0
    t0=$(date +%s)
    install_pkgs || return 1
    [ -d "$d/pids" ] && stop "$d"
    rm -rf "$d/state" "$d/log" "$d/spool"
    base=$(free_ports $((n + 1))) || { say "no $((n + 1)) free ports"; return 1; }
    write_conf "$d" "$n" $((base + 1)) || return 1
    export SLURM_CONF=$d/etc/slurm.conf
    [ -f "$d/munge/munge.key" ] || {
        head -c 1024 /dev/urandom >"$d/munge/munge.key" && chmod 400 "$d/munge/munge.key"
    }
    spawn "$d" munged $MUNGED -F --force --socket="$d/munge/munge.sock" \
        --key-file="$d/munge/munge.key" --pid-file="$d/munge/munged.pid" \
        --log-file="$d/munge/munged.log" --seed-file="$d/munge/seed" --num-threads=2
    if ! wait_for 10 test -S "$d/munge/munge.sock"; then
        say "munged did not start"; stop "$d"; return 1
    fi
    spawn "$d" slurmctld "$d/bin/slurmctld" -D -c -f "$SLURM_CONF"
    if ! wait_for "$START_WAIT_S" scontrol ping >/dev/null 2>&1; then
        say "slurmctld does not answer"; tail -5 "$d/log/slurmctld.log" >&2; stop "$d"; return 1
    fi
    local i
    for i in $(seq 1 "$n"); do
        spawn "$d" slurmd "$d/bin/slurmd" -D -N "c$i" -f "$SLURM_CONF" -d "$d/bin/slurmstepd"
    done
    if ! wait_for "$START_WAIT_S" all_idle "$n"; then
        say "not all $n nodes idle:"; sinfo -N >&2; stop "$d"; return 1
    fi
    if [ -n "$owner" ]; then # stop the cluster when the owner goes, whatever killed it
        (
            trap '' HUP INT
            while kill -0 "$owner" 2>/dev/null && [ -f "$d/pids/slurmctld" ]; do sleep 1; done
            [ -f "$d/pids/slurmctld" ] && WATCHDOG_SELF=$BASHPID stop "$d"
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$d/pids/watchdog"
    fi
    say "$n nodes idle after $(($(date +%s) - t0)) s ($SLURM_CONF)"
}

cmd=${1:-}
dir=${2:-}
usage() { echo "usage: $0 start|stop DIR [--nodes N] [--owner PID]" >&2; exit 2; }
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
nodes=4 owner=""
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    *) usage ;;
    esac
done
mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || exit 2
case $cmd in
start) start "$dir" "$nodes" "$owner" ;;
stop) stop "$dir" ;;
*) usage ;;
esac
