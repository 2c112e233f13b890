#!/usr/bin/env bash
# Start the head node of a backfill cluster on this machine.
#
#   cluster/start-head.sh                 token auth on (Ray 2.60's default); the token is created
#                                         in ~/.ray/auth_token if there is none yet
#   RAY_AUTH_MODE=disabled cluster/start-head.sh   no auth: a laptop or a private test network only
#
# Environment: RAY_PORT (6379), DASHBOARD_PORT (8265), NUM_CPUS (all), BIND (127.0.0.1; set it to
# the machine's address for workers on other machines), RAY (the ray executable).
set -euo pipefail
RAY=${RAY:-ray}
RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
BIND=${BIND:-127.0.0.1}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
    "$RAY" get-auth-token --generate >/dev/null   # ~/.ray/auth_token: keep it secret, copy it to workers and clients
fi

"$RAY" start --head --node-ip-address "$BIND" --port "$RAY_PORT" \
    --dashboard-host "$BIND" --dashboard-port "$DASHBOARD_PORT" --include-dashboard true \
    --disable-usage-stats ${NUM_CPUS:+--num-cpus "$NUM_CPUS"} "$@"

cat <<MSG

head up: GCS $BIND:$RAY_PORT, dashboard and job API http://$BIND:$DASHBOARD_PORT (auth: $RAY_AUTH_MODE)
  workers:  RAY_AUTH_MODE=$RAY_AUTH_MODE cluster/start-worker.sh $BIND:$RAY_PORT
  a job:    RAY_AUTH_MODE=$RAY_AUTH_MODE cluster/submit-backfill.sh http://$BIND:$DASHBOARD_PORT --source ... --start N --end M --out ...
MSG
