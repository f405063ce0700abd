#!/usr/bin/env bash
# The test command of the README (and of .ci/run): make sure PostgreSQL runs,
# then run the whole suite. moto's S3 server is started by the test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure_postgres.sh
exec python3 -m pytest "$@"
