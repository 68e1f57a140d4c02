#!/bin/bash
# Stop the daemons that start_slurm.sh started (the PIDs in $SLURM_STATE/started), and wait until
# they are gone (slurmd can hang on exit: SIGKILL after 10 s); then remove the config files it wrote.
S=${SLURM_STATE:?set SLURM_STATE}
pids=$( [ -s "$S/started" ] && tr '\n' ' ' <"$S/started"); pids=$(echo $pids)
marker="# written by scalinglab tests/slurm/start_slurm.sh"
# jobs left by a failed test: their slurmstepd would outlive slurmd (only on our own test cluster)
if grep -qF "$marker" /etc/slurm/slurm.conf 2>/dev/null; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    [ -n "${jobs// /}" ] && timeout 10 scancel $jobs 2>/dev/null && sleep 1
fi
if [ -n "$pids" ]; then
    kill $pids 2>/dev/null
    for i in $(seq 1 40); do ps -p "${pids// /,}" >/dev/null 2>&1 || break; sleep 0.25; done
    ps -p "${pids// /,}" >/dev/null 2>&1 && kill -9 $pids 2>/dev/null
fi
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    grep -qF "$marker" "$f" 2>/dev/null && rm -f "$f"
done
echo "stopped: ${pids:-nothing}"
