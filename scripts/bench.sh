#!/bin/sh
# Builds the release binaries and runs the benchmarks of issue 7; prints the table.
#   scripts/bench.sh                 # full run (100 000 orders), ~5 min on 2 cores
#   scripts/bench.sh --quick         # 10 000 orders, shorter load phases
#   scripts/bench.sh --markdown docs/perf-table.md   # also write the table as Markdown
#   scripts/bench.sh --only single,freshness        # one shop at 20 QPS (issue 14); BENCH_SINGLE_ORDERS=100000 for the big one
# Needs: a local PostgreSQL as for the tests (TEST_DATABASE_URL), psql, pg_dump and wrk on PATH.
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
cargo build --release --features testkit --bin temu-sync --bin bench
exec target/release/bench "$@"
