#!/usr/bin/env bash
# A Dask scheduler and two workers as separate processes on 127.0.0.1, then a campaign on them:
#   deploy/local/run-local.sh campaign.toml results/
# (without arguments: simulates the tiny campaign first). Stops the processes it started.
set -euo pipefail
PORT=${DASK_PORT:-8786}
WORK=$(mktemp -d -t daskxpcs-local.XXXXXX)

if [ $# -ge 1 ]; then
    MANIFEST=$1
    OUT=${2:-results}
else
    daskxpcs simulate "${WORK}/campaign" --preset tiny
    MANIFEST=${WORK}/campaign/campaign.toml
    OUT=${WORK}/results
fi

export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=2
dask scheduler --host 127.0.0.1 --port "${PORT}" --dashboard-address 127.0.0.1:8787 \
    >"${WORK}/scheduler.log" 2>&1 &
PIDS=($!)
for i in 1 2; do
    dask worker "tcp://127.0.0.1:${PORT}" --host 127.0.0.1 --nthreads 1 --name "w${i}" \
        --local-directory "${WORK}/w${i}" >"${WORK}/worker${i}.log" 2>&1 &
    PIDS+=($!)
done
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

python - "${PORT}" <<'PY'
import sys
from distributed import Client
with Client(f"tcp://127.0.0.1:{sys.argv[1]}", timeout="60s") as c:
    c.wait_for_workers(2, timeout=120)
PY

daskxpcs run "${MANIFEST}" --out "${OUT}" --scheduler "tcp://127.0.0.1:${PORT}"
echo "results in ${OUT}; logs in ${WORK}"
