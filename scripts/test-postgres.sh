# Sourced by scripts/test: makes a PostgreSQL server ready for the tests and exports
# MERIDIAN_TEST_PG_URL, saying what it did. Tests create (and drop) one database each on it, so the
# role they connect as needs CREATEDB.
#
# In order, until one works:
#   1. MERIDIAN_TEST_PG_URL when it is set (used as it is; nothing is changed);
#   2. postgres://postgres@HOST:PORT/test (PGHOST, default 127.0.0.1; PGPORT, default 5432), as the
#      project's machines have it (trust auth, database test);
#   3. the local cluster on PORT started, if one is installed there and stopped;
#   4. on a server that answers but refuses that URL (no `test` database, password auth on TCP):
#      a role `meridian_test` (password `meridian_test`, CREATEDB) and its database created
#      through the local superuser (`postgres` over the Unix socket);
#   5. a private cluster in a temporary directory on a free port (trust auth), stopped and removed
#      when the run ends; Debian's postgresql package is installed first if no initdb exists.

pg_private_dir=""
pg_private_user=""

pg_url_works() {
  psql -w "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

pg_listening() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Runs a command as the PostgreSQL superuser account, when this user may.
as_pg_superuser() {
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  elif [ "$(id -un)" = postgres ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n -u postgres true 2>/dev/null; then
    sudo -n -u postgres -- "$@"
  else
    return 1
  fi
}

ensure_pg_binaries() {
  if ! command -v psql >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; installing Debian's postgresql package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
}

# Starts the installed cluster on port $1 if there is one and it is down.
start_local_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 1
  local version name
  read -r version name < <(pg_lsclusters --no-header 2>/dev/null | awk -v p="$1" '$3 == p && $4 == "down" {print $1, $2; exit}')
  [ -n "${version:-}" ] || return 1
  echo "PostgreSQL cluster $version/$name (port $1) is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || return 1
  for _ in $(seq 1 30); do pg_listening "$2" "$1" && return 0; sleep 1; done
  return 1
}

# Creates role and database meridian_test through the local superuser on port $1.
create_test_role() {
  local port=$1
  as_pg_superuser psql -p "$port" -d postgres -v ON_ERROR_STOP=1 -Atq >/dev/null 2>&1 <<'SQL' || return 1
SELECT 'CREATE ROLE meridian_test LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meridian_test')
\gexec
ALTER ROLE meridian_test LOGIN CREATEDB PASSWORD 'meridian_test';
SELECT 'CREATE DATABASE meridian_test OWNER meridian_test' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'meridian_test')
\gexec
SQL
}

# Creates, starts and exports a private trust-auth cluster in a temporary directory.
start_private_cluster() {
  ensure_pg_binaries
  local bin port
  bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
  pg_private_dir=$(mktemp -d "${TMPDIR:-/tmp}/meridian-pg.XXXXXX")
  # initdb refuses to run as root: the cluster then belongs to the postgres account.
  if [ "$(id -u)" = 0 ]; then
    pg_private_user=postgres
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$pg_private_dir"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run_pg() { if [ -n "$pg_private_user" ]; then runuser -u "$pg_private_user" -- "$@"; else "$@"; fi; }
  run_pg "$bin/initdb" -D "$pg_private_dir/data" -U postgres --auth=trust -E UTF8 >"$pg_private_dir/initdb.log" 2>&1 ||
    { cat "$pg_private_dir/initdb.log" >&2; return 1; }
  run_pg "$bin/pg_ctl" -D "$pg_private_dir/data" -l "$pg_private_dir/server.log" -w \
    -o "-p $port -k $pg_private_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null ||
    { cat "$pg_private_dir/server.log" >&2; return 1; }
  export MERIDIAN_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL: started a private cluster for this run in $pg_private_dir (port $port, trust auth); it is removed at the end"
}

prepare_test_postgres() {
  if [ -n "${MERIDIAN_TEST_PG_URL:-}" ]; then
    echo "PostgreSQL: using MERIDIAN_TEST_PG_URL as given"
    return 0
  fi
  local host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432}
  local url="postgres://postgres@$host:$port/test"
  command -v psql >/dev/null 2>&1 || ensure_pg_binaries
  if ! pg_listening "$host" "$port"; then
    start_local_cluster "$port" "$host" || true
  fi
  if pg_url_works "$url"; then
    export MERIDIAN_TEST_PG_URL="$url"
    echo "PostgreSQL: using $url"
    return 0
  fi
  if pg_listening "$host" "$port"; then
    local own="postgres://meridian_test:meridian_test@$host:$port/meridian_test"
    if pg_url_works "$own" || { create_test_role "$port" && pg_url_works "$own"; }; then
      export MERIDIAN_TEST_PG_URL="$own"
      echo "PostgreSQL on $host:$port refused $url; created role and database meridian_test through the local superuser (CREATEDB, password auth) and use them"
      return 0
    fi
    echo "PostgreSQL on $host:$port refused $url and no local superuser could prepare it"
  else
    echo "No PostgreSQL answers on $host:$port"
  fi
  start_private_cluster
}

cleanup_test_postgres() {
  if [ -n "$pg_private_dir" ] && [ -d "$pg_private_dir/data" ]; then
    local bin
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n1)")
    if [ -n "$pg_private_user" ]; then
      runuser -u "$pg_private_user" -- "$bin/pg_ctl" -D "$pg_private_dir/data" -m immediate stop >/dev/null 2>&1 || true
    else
      "$bin/pg_ctl" -D "$pg_private_dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$pg_private_dir"
  fi
}
