#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the tests (Debian's slurmctld,
# slurmd, munge; no systemd, no cgroups, no accounting), shaped so that the
# site profiles run on it unchanged but for the account (SBATCH_ACCOUNT):
# - partition `debug` (profiles/slurm-ci): the machine's real cores;
# - partitions `batch` (Frontier) and `regular` (Perlmutter): the node also
#   declares $CBEDFLOW_SLURM_CPUS CPUs (default 64) and $CBEDFLOW_SLURM_GPUS fake
#   GPUs (default 8: gres lines whose File= is an empty file, one per GPU, as
#   slurmd refuses a device file twice) and the feature `gpu`
#   (Perlmutter's constraint), so a GPU site's requests (--gpus, --cpus-per-task 7
#   or 32) are scheduled as written; MpiDefault=pmi2, as sites set their PMI.
# Idempotent:
#   tests/slurm/cluster.sh start   # prints `export SLURM_CONF=...` on success
#   tests/slurm/cluster.sh stop    # stops only the daemons this script started (by PID)
#   tests/slurm/cluster.sh status
# State lives in $CBEDFLOW_SLURM_DIR (default /tmp/cbedflow-slurm).
set -euo pipefail
DIR=${CBEDFLOW_SLURM_DIR:-/tmp/cbedflow-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
HOST=$(hostname -s)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    mkdir -p "$DIR"/{state,spool,log,run,munge}
    local cpus mem real gpus
    real=$(nproc)
    cpus=${CBEDFLOW_SLURM_CPUS:-64}
    gpus=${CBEDFLOW_SLURM_GPUS:-8}
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    cat > "$CONF" <<CONF
ClusterName=cbedflow-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=pmi2
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus Feature=gpu State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP MaxCPUsPerNode=$real
PartitionName=batch Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=regular Nodes=$HOST MaxTime=INFINITE State=UP
CONF
    : > "$DIR/gres.conf"
    mkdir -p "$DIR/fakegpu"
    for i in $(seq 0 $((gpus - 1))); do
        : > "$DIR/fakegpu/gpu$i"
        echo "NodeName=$HOST Name=gpu File=$DIR/fakegpu/gpu$i" >> "$DIR/gres.conf"
    done
    # job steps (srun inside sbatch) read the default location; link ours there
    # unless a real configuration is installed
    mkdir -p /etc/slurm
    for f in slurm.conf gres.conf; do
        if [ ! -e "/etc/slurm/$f" ] || [ -L "/etc/slurm/$f" ]; then
            ln -sfn "$DIR/$f" "/etc/slurm/$f"
        fi
    done
}

start() {
    for b in slurmctld slurmd munged sinfo; do
        command -v $b >/dev/null || { echo "missing $b: apt-get install slurmctld slurmd slurm-client munge" >&2; exit 1; }
    done
    write_conf
    if ! alive "$DIR/run/munged.pid"; then
        [ -f "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
        chmod 700 "$DIR/munge"; chmod 400 "$DIR/munge/munge.key"
        mkdir -p /run/munge
        munged --key-file="$DIR/munge/munge.key" --socket=/run/munge/munge.socket.2 \
            --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munge.seed" --force
    fi
    alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF" -i
    alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF"
    for _ in $(seq 1 60); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm did not come up; see $DIR/log" >&2
    sinfo >&2 || true
    exit 1
}

stop() {
    for d in slurmd slurmctld munged; do
        if alive "$DIR/run/$d.pid"; then
            kill "$(cat "$DIR/run/$d.pid")" || true
        fi
    done
    for d in slurmd slurmctld munged; do
        for _ in $(seq 1 20); do alive "$DIR/run/$d.pid" || break; sleep 0.5; done
        rm -f "$DIR/run/$d.pid"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
