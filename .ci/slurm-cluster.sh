#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on loopback, for hubkit's scale-out tests and CI.
#
#   .ci/slurm-cluster.sh start    install Debian's packages if missing, configure, start, wait idle
#   .ci/slurm-cluster.sh stop     stop the daemons this script started (by their pid files)
#   .ci/slurm-cluster.sh status   print the node's state; exit 0 only when the node is usable
#   .ci/slurm-cluster.sh env      print `export SLURM_CONF=...` for a shell to eval
#
# Everything (config, munge key and socket, spool, state, logs, pid files) lives under
# $HUBKIT_SLURM_DIR (default /tmp/hubkit-slurm): nothing under /etc is written, and a real Slurm
# install on the same machine is neither read nor disturbed. Client commands find this cluster
# through SLURM_CONF=$HUBKIT_SLURM_DIR/slurm.conf.
#
# No cgroups (this runs in containers): processes are tracked by /proc, tasks are not bound,
# there is no accounting database. `sacct` therefore does not work here; job state comes from
# `squeue`/`scontrol`, which keep finished jobs for MinJobAge seconds.
set -euo pipefail

DIR="${HUBKIT_SLURM_DIR:-/tmp/hubkit-slurm}"
# Ports away from Slurm's defaults (6817/6818), so a real cluster on the same host is left alone.
CTLD_PORT="${HUBKIT_SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${HUBKIT_SLURM_SLURMD_PORT:-16818}"
PARTITION="${HUBKIT_SLURM_PARTITION:-debug}"
NODE="hubkit-node"
CONF="$DIR/slurm.conf"
START_TIMEOUT="${HUBKIT_SLURM_START_TIMEOUT:-90}"

log() { echo "slurm-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

export SLURM_CONF="$CONF"

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them (needs Debian/Ubuntu, or install Slurm and munge yourself)"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; installing them needs root (or sudo)"
        sudo="sudo"
    fi
    log "installing ${missing[*]} with apt-get"
    # The packages' own init scripts may try to start their services on the default ports and
    # /etc/munge; this cluster uses neither, so whatever they do is harmless here.
    $sudo apt-get update -q >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

running() {
    # True when the daemon named $1 runs with the pid in its pid file here. The name check
    # guards against a stale pid file whose number now belongs to another process.
    local f="$DIR/run/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

node_state() {
    # Prints the node's state as sinfo sees it (idle, mixed, allocated, down*...), or nothing.
    timeout 10 sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true
}

registered_since() {
    # Prints when the node's slurmd last registered (epoch seconds), 0 if unknown.
    local t
    t="$(timeout 10 scontrol show node "$NODE" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')"
    date -d "$t" +%s 2>/dev/null || echo 0
}

write_config() {
    mkdir -p "$DIR"/{ctld,spool,log,run,munge}
    chmod 700 "$DIR" "$DIR/munge"
    if [ ! -s "$DIR/munge/munge.key" ]; then
        # munge wants 1024 bytes of secret, readable only by the daemon's user.
        head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
        chmod 400 "$DIR/munge/munge.key"
    fi
    # The node line from the hardware itself (`slurmd -C`), so slurmd never finds the node
    # smaller than configured and drains it. RealMemory is in MiB.
    local hw cpus mem
    hw="$(slurmd -C | head -n1)"
    cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
    mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    [ -n "$cpus" ] && [ -n "$mem" ] || die "could not read CPUs/RealMemory from 'slurmd -C': $hw"
    local host user addr bind
    host="$(hostname -s)"
    user="$(id -un)"
    # Slurm's only way to avoid binding every interface is to bind the address the host name
    # resolves to. Do it when that is loopback (containers, CI); otherwise keep the default,
    # since NodeAddr below is loopback and a daemon bound elsewhere would be unreachable.
    addr="$(getent hosts "$(hostname)" | awk '{print $1; exit}')"
    if [[ "$addr" == 127.* ]]; then
        bind="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
    else
        bind="# host name resolves to '${addr:-nothing}', not loopback: daemons listen on all addresses"
        log "warning: $(hostname) resolves to '${addr:-nothing}', not loopback; the daemons listen on all addresses (ports $CTLD_PORT, $SLURMD_PORT)"
    fi
    cat > "$CONF.tmp" <<EOF
# Written by hubkit's .ci/slurm-cluster.sh: a one-node test cluster on loopback.
ClusterName=hubkit
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
$bind
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers: no cgroups. Track processes through /proc, do not bind tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks no memory takes the whole node and jobs run one at a time.
DefMemPerCPU=512
ReturnToService=2
# Trust this file over what slurmd measures (containers report odd topologies).
SlurmdParameters=config_overrides
# Keep finished jobs visible to squeue/scontrol for 10 minutes: there is no sacct here.
MinJobAge=600
# scancel: SIGTERM, then SIGKILL after 2 s. submitit's job wrapper ignores SIGTERM, so every
# cancel of a running unit takes this long (the job shows COMPLETING meanwhile).
KillWait=2
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    running munged && return 0
    # --force: munged refuses a socket directory under a world-writable /tmp without it,
    # even though the directory itself is 0700.
    munged --force \
        --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/log/munged.log"
}

start() {
    local t0
    t0=$(date +%s.%N)
    install_packages
    # slurmd starts each job as the user who submitted it, which takes root.
    [ "$(id -u)" = 0 ] || die "starting the cluster needs root (slurmd runs jobs as their owners)"
    if [ "$(status_quiet)" = ok ]; then
        log "already running (SLURM_CONF=$CONF)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    # Rewrite the config only when no daemon is reading it.
    if ! running slurmctld && ! running slurmd; then
        write_config
    fi
    start_munge
    running slurmctld || slurmctld -f "$CONF" \
        || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    local slurmd_started=0
    if ! running slurmd; then
        slurmd_started=$(date +%s)
        slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start; see $DIR/log/slurmd.log"
    fi
    local deadline state
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        state="$(node_state)"
        # After a restart the controller restores the node as idle from its saved state; the
        # node is only usable once this slurmd has registered (SlurmdStartTime moves).
        case "$state" in
            idle|mix|mixed|alloc|allocated)
                [ "$(registered_since)" -ge "$slurmd_started" ] && break ;;
        esac
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "node state after ${START_TIMEOUT}s: '${state:-unreachable}'"
            tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
            die "the node did not become idle"
        fi
        sleep 0.5
    done
    log "node $NODE is $state after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s (SLURM_CONF=$CONF)"
    echo "export SLURM_CONF=$CONF"
}

stop_daemons() {
    # SIGTERM to all named daemons at once (each takes 1-2 s to shut down), SIGKILL after 10 s.
    local name pid pids=()
    for name in "$@"; do
        if running "$name"; then
            pid="$(cat "$DIR/run/$name.pid")"
            kill "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        fi
    done
    local entry deadline=$(( $(date +%s) + 10 ))
    for entry in "${pids[@]}"; do
        name="${entry%%:*}" pid="${entry##*:}"
        while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/run/$name.pid"
    done
}

drain_jobs() {
    # Cancel this cluster's jobs and let them finish completing: a slurmd stopped under a
    # completing job leaves its slurmstepd (and the job's processes) behind.
    running slurmctld && running slurmd || return 0
    local ids
    ids="$(timeout 10 squeue -h -o '%A' -t PENDING,CONFIGURING,RUNNING,SUSPENDED 2>/dev/null || true)"
    # shellcheck disable=SC2086 # one id per word
    [ -n "$ids" ] && timeout 30 scancel $ids 2>/dev/null || true
    local deadline=$(( $(date +%s) + 20 ))
    while [ -n "$(timeout 10 squeue -h -o '%A' -t CONFIGURING,RUNNING,SUSPENDED,COMPLETING 2>/dev/null || true)" ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "warning: jobs still completing after 20 s; stopping anyway"
            break
        fi
        sleep 0.2
    done
}

stop_strays() {
    # Any slurmstepd left from this cluster (its working directory is our log folder).
    local pid cwd
    for pid in $(pgrep -x slurmstepd || true); do
        cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
        if [ "$cwd" = "$(readlink -f "$DIR/log")" ]; then
            log "stopping stray slurmstepd $pid"
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
}

stop() {
    [ -d "$DIR" ] || { log "nothing to stop under $DIR"; return 0; }
    drain_jobs
    stop_daemons slurmd slurmctld
    # munged last: the Slurm daemons authenticate their goodbyes through it.
    stop_daemons munged
    stop_strays
    log "stopped (state kept in $DIR)"
}

status_quiet() {
    if running munged && running slurmctld && running slurmd; then
        case "$(node_state)" in
            idle|mix|mixed|alloc|allocated) echo ok; return ;;
        esac
    fi
    echo down
}

status() {
    local d
    for d in munged slurmctld slurmd; do
        if running "$d"; then
            log "$d running (pid $(cat "$DIR/run/$d.pid"))"
        else
            log "$d not running"
        fi
    done
    local state=""
    # Without a controller, sinfo retries for ~10 s before giving up.
    running slurmctld && state="$(node_state)"
    log "node $NODE: ${state:-unreachable} (SLURM_CONF=$CONF)"
    [ "$(status_quiet)" = ok ]
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
