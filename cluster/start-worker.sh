#!/usr/bin/env bash
# Join this machine to a backfill cluster as a worker node: cluster/start-worker.sh HEAD_HOST:PORT
#
# With token auth (the default), this machine needs the head's token: copy the head's
# ~/.ray/auth_token here, or export RAY_AUTH_TOKEN=<its content>. Environment: NUM_CPUS (all),
# RAY (the ray executable). The project must be importable here too (pip install it), unless
# jobs ship it with `ray job submit --working-dir .`.
set -euo pipefail
RAY=${RAY:-ray}
[ $# -ge 1 ] || { echo "usage: $0 HEAD_HOST:PORT [ray start options]" >&2; exit 2; }
head=$1
shift
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$HOME/.ray/auth_token" ]; then
    echo "token auth is on but there is no token: copy the head's ~/.ray/auth_token, or set RAY_AUTH_TOKEN" >&2
    exit 2
fi
exec "$RAY" start --address "$head" --disable-usage-stats ${NUM_CPUS:+--num-cpus "$NUM_CPUS"} "$@"
