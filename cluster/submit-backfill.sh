#!/usr/bin/env bash
# Submit a backfill to a running cluster and follow its log until it ends:
#
#   cluster/submit-backfill.sh http://HEAD:8265 --source s3://bucket/lake --start N --end M --out s3://bucket/out
#   cluster/submit-backfill.sh http://HEAD:8265 --config cluster/backfill.example.yaml
#
# The project directory is uploaded as the job's working directory, so nodes need Ray and the
# project's dependencies, not the project itself. Ray leaves out what .gitignore names, the
# compiled XDR decoder (*.so) included, so shipped code decodes with its pure-Python twin:
# for full speed install the project on every node (pip install .) and set SHIP_CODE=0.
# With token auth the client needs the token (~/.ray/auth_token or RAY_AUTH_TOKEN) and
# RAY_AUTH_MODE=token. The exit code is the job's: stop it with `ray job stop <id>` (SIGTERM;
# rerun the same command to resume).
set -euo pipefail
RAY=${RAY:-ray}
PYTHON=${PYTHON:-python}
[ $# -ge 2 ] || { echo "usage: $0 DASHBOARD_URL backfill-options..." >&2; exit 2; }
address=$1
shift
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
cd "$(dirname "$0")/.."
ship=(--working-dir .)
[ "${SHIP_CODE:-1}" = 0 ] && ship=()
exec "$RAY" job submit --address "$address" "${ship[@]}" -- "$PYTHON" -m obsrvr_ray.jobs.backfill "$@"
