#!/usr/bin/env bash
# Start the team stack on this machine, all on 127.0.0.1 (`make team`):
#   PostgreSQL database  -> mlflow server (served artifacts, basic-auth)  -> the app under gunicorn.
# Settings (environment): TEAM_DIR (./team-data), TEAM_DB (mlflowcc_team), MLFLOW_PORT (5000),
# APP_PORT (8050), WORKERS (4), TEAM_AUTH (basic | none), MLFLOW_AUTH_ADMIN_PASSWORD (first start),
# APP_HOSTS (extra host names the app answers to, MLFLOW_CC_ALLOWED_HOSTS; default: loopback only).
# Ctrl-C stops both servers. See README, "Team deployment", for a real (multi-machine) setup.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN="${VENV_BIN:-.venv/bin}"
TEAM_DIR="${TEAM_DIR:-$PWD/team-data}"
TEAM_DB="${TEAM_DB:-mlflowcc_team}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
APP_PORT="${APP_PORT:-8050}"
WORKERS="${WORKERS:-4}"
TEAM_AUTH="${TEAM_AUTH:-basic}"
PG="postgresql+psycopg2://postgres@127.0.0.1:5432/$TEAM_DB"

mkdir -p "$TEAM_DIR/artifacts" "$TEAM_DIR/cache"
chmod 700 "$TEAM_DIR"
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$TEAM_DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$TEAM_DB\""

server_args=(server --backend-store-uri "$PG" --artifacts-destination "$TEAM_DIR/artifacts"
             --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 2)
export MLFLOW_CC_CACHE_DIR="$TEAM_DIR/cache"
if [ "$TEAM_AUTH" = basic ]; then
  # MLflow's basic-auth: users and permissions in their own database; new users see nothing until granted.
  sed "s#@TEAM_DIR@#$TEAM_DIR#" deploy/basic_auth.ini > "$TEAM_DIR/basic_auth.ini"
  export MLFLOW_AUTH_CONFIG_PATH="$TEAM_DIR/basic_auth.ini"
  [ -f "$TEAM_DIR/flask-secret" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$TEAM_DIR/flask-secret")
  # 48 random bytes, base64: 64 characters (the app refuses secrets under 32 or example values)
  [ -f "$TEAM_DIR/app-secret" ] || (umask 077; head -c 48 /dev/urandom | base64 -w0 > "$TEAM_DIR/app-secret")
  export MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$TEAM_DIR/flask-secret")"
  export MLFLOW_CC_SECRET_KEY="$(cat "$TEAM_DIR/app-secret")"
  if [ ! -f "$TEAM_DIR/basic_auth.db" ] && [ -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$TEAM_DIR/admin-password")
    export MLFLOW_AUTH_ADMIN_PASSWORD="$(cat "$TEAM_DIR/admin-password")"
    echo "first start: MLflow admin user 'admin', password in $TEAM_DIR/admin-password (mode 600)"
  fi
  server_args+=(--app-name basic-auth)
  export MLFLOW_CC_AUTH=mlflow
else
  export MLFLOW_CC_AUTH=none
fi

"$VENV_BIN/mlflow" "${server_args[@]}" > "$TEAM_DIR/mlflow-server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null && break
  kill -0 $server_pid 2>/dev/null || { tail -30 "$TEAM_DIR/mlflow-server.log"; exit 1; }
  sleep 1
done
echo "mlflow server: http://127.0.0.1:$MLFLOW_PORT (PostgreSQL $TEAM_DB, artifacts $TEAM_DIR/artifacts)"
[ "$TEAM_AUTH" = basic ] && echo "add users: see README, Team deployment (admin API or the MLflow UI's admin page)"

export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"
export MLFLOW_CC_BIND="127.0.0.1:$APP_PORT" MLFLOW_CC_WORKERS="$WORKERS"
export MLFLOW_CC_ALLOWED_HOSTS="${APP_HOSTS:-}"
echo "app: http://127.0.0.1:$APP_PORT ($WORKERS gunicorn workers, sign-in: $MLFLOW_CC_AUTH)"
"$VENV_BIN/gunicorn" -c python:dash_app.gunicorn_conf 'dash_app.wsgi:server'
