#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, for testing the workflow's SLURM profile for real.
#
#   tests/cluster/slurm.sh install   # apt packages: munge, slurmctld, slurmd, slurm-client (root)
#   tests/cluster/slurm.sh up        # write slurm.conf, start munged, slurmctld, slurmd; wait idle
#   tests/cluster/slurm.sh env       # print `export SLURM_CONF=...` for the shell that submits
#   tests/cluster/slurm.sh down      # stop the daemons this script started
#
# Everything the cluster writes (config, state, spool, logs, pid files) lives under
# $HEPFLOWS_SLURM_DIR (default /tmp/hepflows-slurm).  SLURM's commands find it through SLURM_CONF
# and through /etc/slurm/slurm.conf, a link made only where no slurm.conf exists (and removed by
# `down`): the SLURM job step of snakemake clears every SLURM_* variable, SLURM_CONF included,
# before its inner `srun`, which then reads the default path.  It runs as root with no systemd
# (a container or a CI machine): the daemons are started here, in the background.
#
# The node is the host itself, named by `hostname -s` and reached on 127.0.0.1.  It declares one
# GPU and more CPUs and memory than the host may have (SlurmdParameters=config_overrides), so the
# jobs sized by workflow/profiles/slurm (GPU requests for train and sample included) are accepted
# unchanged; with TaskPlugin=task/none nothing is enforced and the jobs simply run on the CPU.
# There is no accounting database: job states come from squeue, which sees a finished job for
# MinJobAge seconds, so MinJobAge stays far above the submitting side's status-check interval.
set -euo pipefail

DIR=${HEPFLOWS_SLURM_DIR:-/tmp/hepflows-slurm}
CONF=$DIR/etc/slurm.conf
DEFAULT_CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
# What the node declares (see above); override for a bigger test.
NODE_CPUS=${HEPFLOWS_SLURM_CPUS:-16}
NODE_MEM_MB=${HEPFLOWS_SLURM_MEM_MB:-131072}
UP_TIMEOUT=${HEPFLOWS_SLURM_UP_TIMEOUT:-60}

log() { echo "slurm.sh: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        log "SLURM and munge already installed"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d or the missing init system keeps the packages' services from starting:
    # `up` starts the daemons itself.
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
}

write_config() {
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/etc" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    cat >"$CONF" <<EOF
# Single-node test cluster written by tests/cluster/slurm.sh.
ClusterName=hepflows-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# squeue is the only source of job states: keep finished jobs visible for an hour (far above
# the status-check interval, and long enough for a test to check every job of its run).
MinJobAge=3600
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -L "$DEFAULT_CONF" ] || [ ! -e "$DEFAULT_CONF" ]; then
        mkdir -p "$(dirname "$DEFAULT_CONF")"
        ln -sfn "$CONF" "$DEFAULT_CONF"
    else
        log "$DEFAULT_CONF exists and is not ours: jobs' inner srun calls will read it"
    fi
    # A GPU the scheduler counts but no job can use: slurmd drops GPUs without a device file,
    # and /dev/null is a device file that task/none never binds.
    cat >"$DIR/etc/gres.conf" <<EOF
NodeName=$NODE Name=gpu Count=1 File=/dev/null
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already running"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
    # munged writes its own pid file; remember that this script started it.
    for _ in $(seq 50); do
        [ -s /run/munge/munged.pid ] && break
        sleep 0.1
    done
    cp /run/munge/munged.pid "$DIR/run/munged.pid"
}

node_state() {
    SLURM_CONF=$CONF sinfo --noheader --nodes "$NODE" --format '%T' 2>/dev/null | head -n1
}

up() {
    install_packages
    write_config
    start_munge
    export SLURM_CONF=$CONF
    # -c: a cold start, whatever an earlier cluster left in the same folder.
    /usr/sbin/slurmctld -c -f "$CONF"
    /usr/sbin/slurmd -f "$CONF"
    local state=""
    for _ in $(seq "$UP_TIMEOUT"); do
        state=$(node_state || true)
        [ "$state" = "idle" ] && break
        sleep 1
    done
    if [ "$state" != "idle" ]; then
        log "node $NODE is '${state:-unreachable}' after ${UP_TIMEOUT}s; logs in $DIR/log"
        tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        exit 1
    fi
    sinfo >&2
    log "up; run: export SLURM_CONF=$CONF"
}

stop_pidfile() {
    local name=$1 pidfile=$2
    [ -s "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        log "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

down() {
    stop_pidfile slurmd "$DIR/run/slurmd.pid"
    stop_pidfile slurmctld "$DIR/run/slurmctld.pid"
    stop_pidfile munged "$DIR/run/munged.pid"
    if [ "$(readlink "$DEFAULT_CONF" 2>/dev/null)" = "$CONF" ]; then
        rm -f "$DEFAULT_CONF"
    fi
}

case "${1:-}" in
    install) install_packages ;;
    up) up ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    down) down ;;
    *)
        echo "usage: $0 install|up|env|down   (state under \$HEPFLOWS_SLURM_DIR, now $DIR)" >&2
        exit 2
        ;;
esac
