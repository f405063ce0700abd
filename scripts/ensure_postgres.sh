#!/usr/bin/env bash
# Make a PostgreSQL server answer on 127.0.0.1:5432 for the tests:
# nothing to do if one answers (or MATERIALIZER_TEST_PG_URL points elsewhere);
# start the installed cluster if it is stopped; install Debian's package if missing.
set -euo pipefail

if [[ -n "${MATERIALIZER_TEST_PG_URL:-}" ]]; then
  exit 0
fi

answers() {
  python3 - <<'PY' 2>/dev/null
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

wait_for_server() {
  for _ in $(seq 1 30); do
    answers && return 0
    sleep 1
  done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  return 1
}

if answers; then
  exit 0
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package)" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # Tests connect as postgres over TCP without a password, like the CI machines.
  hba=/etc/postgresql/${version}/main/pg_hba.conf
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL ${version}" >&2
as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
wait_for_server
