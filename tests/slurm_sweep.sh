#!/usr/bin/env bash
# scripts/sweep through a real Slurm (Debian's slurmctld, slurmd and munge, installed by scripts/setup
# --tests): starts a single-node cluster on localhost from a generated slurm.conf (own ports, state and
# munge socket in a temporary directory; no cgroups: proctrack/linuxproc, task/none), submits a 2-seed
# quick sweep with the Slurm back end (one sbatch --array job, the aggregation a dependent job), waits
# for it, runs the same sweep with the local back end, requires byte-identical aggregate.json files, and
# shuts the daemons down. Must run as root (slurmd starts the jobs as the submitting user).
#   tests/slurm_sweep.sh SOURCE_ROOT
set -euo pipefail
src="$1"
for prog in munged slurmctld slurmd sbatch scontrol sinfo; do
    command -v "$prog" >/dev/null || PATH="$PATH:/usr/sbin"
    command -v "$prog" >/dev/null \
        || { echo "FAILED: $prog not found (install: bash scripts/setup --tests)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "FAILED: the single-node Slurm test runs slurmd, which needs root"; exit 1; }

tmp="$(mktemp -d /tmp/sdeuq-slurm.XXXXXX)"
chmod 700 "$tmp"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# munge: a private key and socket (the system's munged, if any, is left alone).
mkdir -p "$tmp/munge"
chmod 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
munged --force --foreground --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/seed" \
    >"$tmp/munge/out.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$tmp/munge/munge.socket" ] || { echo "FAILED: munged did not start"; cat "$tmp/munge/"*.log; exit 1; }

# Free ports near 16817 (slurmctld) and 16818 (slurmd), in case another cluster runs here.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=$((16800 + RANDOM % 1000))
while ! port_free "$base" || ! port_free $((base + 1)); do base=$((base + 2)); done
node="$(hostname -s)"
mkdir -p "$tmp/state" "$tmp/spool"
cat > "$tmp/slurm.conf" <<EOF
ClusterName=sdeuqtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
export SLURM_CONF="$tmp/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 100); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then up=1; break; fi
    sleep 0.2
done
if [ "$up" != 1 ]; then
    echo "FAILED: the single-node cluster did not come up"
    sinfo 2>&1 || true
    tail -20 "$tmp/slurmctld.log" "$tmp/slurmd.log" "$tmp/slurmctld.out" "$tmp/slurmd.out" 2>/dev/null
    exit 1
fi
echo "slurm: node $node idle (ports $base, $((base + 1)))"

# A 2-seed quick sweep (sde_convergence with few paths: the test is about the machinery, and cheap).
args=(sde_convergence --seeds 0-1 --quick --set paths=20 --set k-max=6 --set k-ref=8)
if ! timeout 240 python3 "$src/scripts/sweep" "${args[@]}" --backend slurm --time 5 \
        --out "$tmp/slurm-out"; then
    echo "FAILED: the Slurm sweep failed"
    tail -n 20 "$tmp/slurm-out/logs/"* "$tmp/slurmctld.log" "$tmp/slurmd.log" 2>/dev/null
    exit 1
fi
python3 "$src/scripts/sweep" "${args[@]}" --backend local --out "$tmp/local-out" >/dev/null
if ! cmp "$tmp/slurm-out/aggregate.json" "$tmp/local-out/aggregate.json"; then
    echo "FAILED: the Slurm and the local back end aggregated different results"
    diff "$tmp/slurm-out/aggregate.json" "$tmp/local-out/aggregate.json" | head -20
    exit 1
fi
n="$(grep -c '"n": 2' "$tmp/slurm-out/aggregate.json")"
[ "$n" -gt 0 ] || { echo "FAILED: no metric aggregated over 2 seeds"; exit 1; }
# The runs ran as Slurm array tasks: their logs are the array's.
ls "$tmp/slurm-out/logs/" | grep -q '^slurm-[0-9]*_1.out$' || { echo "FAILED: no array task 1 ran"; exit 1; }
echo "slurm_sweep: the Slurm back end's aggregate.json ($n metrics over 2 seeds) equals the local back end's"
