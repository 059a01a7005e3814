#!/bin/sh
# Soak: runs the real daemon against the simulator (mutations + API faults on) and the local
# PostgreSQL (through the fault proxy, a 2 s outage every SOAK_OUTAGE_EVERY s) for SOAK_SECS,
# sampling RSS, open fds, PostgreSQL sessions, records written and errors every SOAK_SAMPLE_SECS.
# Prints the samples and a summary; the summary is also written to target/soak.md.
#
#   scripts/soak.sh            # 30 minutes
#   SOAK_SECS=300 scripts/soak.sh
#   SOAK_LOOKBACK=5m scripts/soak.sh   # sync.lookback (default 1h: the incremental working set grows for an hour)
set -eu
cd "$(dirname "$0")/.."
export SOAK_SECS="${SOAK_SECS:-1800}"
export SOAK_SAMPLE_SECS="${SOAK_SAMPLE_SECS:-5}"
export SOAK_OUTAGE_EVERY="${SOAK_OUTAGE_EVERY:-120}"
export SOAK_LOOKBACK="${SOAK_LOOKBACK:-1h}"
exec cargo test --test fault_matrix -- --ignored --exact soak --nocapture
