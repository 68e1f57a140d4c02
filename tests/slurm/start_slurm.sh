#!/bin/bash
# Start a single-node Slurm on localhost for tests (Debian bookworm, Slurm 22.05, no systemd; root).
# Usage: SLURM_STATE=<empty dir> start_slurm.sh
# Spool, logs and PID files live under $SLURM_STATE; $SLURM_STATE/started lists the PIDs this script
# started, which stop_slurm.sh kills (never a daemon it did not start, e.g. a munged already running).
# The config must be /etc/slurm/slurm.conf: Snakemake's job step strips SLURM_* variables (SLURM_CONF
# included) before it calls srun. A config that this script did not write is never overwritten (exit 3);
# stop_slurm.sh removes ours again.
set -euo pipefail
S=${SLURM_STATE:?set SLURM_STATE to a fresh directory}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge >"$S/apt.log" 2>&1 \
        || { apt-get update >>"$S/apt.log" 2>&1 && apt-get install -y --no-install-recommends slurm-wlm munge >>"$S/apt.log" 2>&1; } \
        || { echo "apt-get install slurm-wlm munge failed, see $S/apt.log"; exit 1; }
fi
marker="# written by scalinglab tests/slurm/start_slurm.sh"
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$marker" /etc/slurm/slurm.conf; then
    echo "/etc/slurm/slurm.conf exists and is not ours: not overwriting a real Slurm configuration"; exit 3
fi
mkdir -p /etc/slurm /run/munge "$S/ctld" "$S/d" && chown munge:munge /run/munge
: >"$S/started"
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for i in $(seq 1 40); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
    cat /run/munge/munged.pid >>"$S/started"
fi
# free ports, so that a Slurm already running on this machine is neither disturbed nor used
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ln -sf /dev/null "$S/fakegpu0"; ln -sf /dev/zero "$S/fakegpu1"   # GRES files must be char devices
host=$(hostname -s)   # NodeName/SlurmctldHost must be this machine's short hostname
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))   # MB, below the real total
for f in slurm.conf gres.conf; do
    sed -e "s/@HOST@/$host/g" -e "s#@STATE@#$S#g" -e "s/@CPUS@/$cpus/g" -e "s/@MEM@/$mem/g" \
        -e "s/@CTLDPORT@/$(port)/g" -e "s/@DPORT@/$(port)/g" "$here/$f" >"$S/$f"
    { echo "$marker"; cat "$S/$f"; } >"/etc/slurm/$f"
done
/usr/sbin/slurmctld
for i in $(seq 1 40); do [ -s "$S/slurmctld.pid" ] && break; sleep 0.25; done
cat "$S/slurmctld.pid" >>"$S/started"
/usr/sbin/slurmd
for i in $(seq 1 40); do [ -s "$S/slurmd.pid" ] && break; sleep 0.25; done
cat "$S/slurmd.pid" >>"$S/started"
for i in $(seq 1 120); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.25; done
sinfo -h -o %T | grep -qx idle || { echo "slurm node not idle: $(scontrol show node | grep -oE 'State=\S+|Reason=.*' | tr '\n' ' ')"; exit 1; }
echo "slurm up: pids $(tr '\n' ' ' <"$S/started")"
