#!/usr/bin/env bash
# The team stack of docker-compose.yml without Docker: PostgreSQL, an S3 endpoint over HTTP (moto's server
# mode stands in for MinIO), and `mlflow server --app-name transfer-laws` on both. Same commands and variable
# names as docker-compose.yml. Source it, then: services_start; ...; services_stop (trap it before starting).
# Exports MLFLOW_TRACKING_URI-free test variables: TL_TEST_SERVER_URI, TL_TEST_PG_URI, MLFLOW_S3_ENDPOINT_URL,
# TL_TEST_S3_BUCKET, AWS_* credentials.

_free_port() { .venv/bin/python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

_wait_http() {  # url, seconds, name, log
  local url=$1 limit=$2 name=$3 log=$4 t=0
  until curl -sf -o /dev/null "$url"; do
    sleep 0.5; t=$((t + 1))
    if [ "$t" -gt $((limit * 2)) ]; then
      echo "[services] $name did not become ready at $url within ${limit}s; its log:" >&2
      tail -n 80 "$log" >&2 || true
      return 1
    fi
  done
}

services_stop() {
  [ -n "${TL_MLFLOW_PID:-}" ] && kill -TERM "$TL_MLFLOW_PID" 2>/dev/null && wait "$TL_MLFLOW_PID" 2>/dev/null
  [ -n "${TL_MOTO_PID:-}" ] && kill -TERM "$TL_MOTO_PID" 2>/dev/null && wait "$TL_MOTO_PID" 2>/dev/null
  if [ -n "${TL_PG_DIR:-}" ] && [ -d "$TL_PG_DIR/data" ]; then
    _as_pg "$TL_PGBIN/pg_ctl" -D "$TL_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ -n "${TL_SERVICES_DIR:-}" ] && rm -rf "$TL_SERVICES_DIR"
  TL_MLFLOW_PID= TL_MOTO_PID= TL_PG_DIR=
}

services_start() {
  set -e
  TL_SERVICES_DIR=$(mktemp -d /tmp/tl-services.XXXXXX); chmod 755 "$TL_SERVICES_DIR"
  export TL_SERVICES_DIR

  # PostgreSQL: initdb refuses root, so the cluster belongs to the postgres OS user; data dir in a temp folder.
  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "[services] PostgreSQL server binaries are missing (apt-get install postgresql)" >&2; return 1
    fi
  fi
  TL_PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); export TL_PGBIN
  TL_PG_DIR=$TL_SERVICES_DIR/pg; mkdir -p "$TL_PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$TL_PG_DIR"
  PGPORT=$(_free_port)
  _as_pg "$TL_PGBIN/initdb" -D "$TL_PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$TL_SERVICES_DIR/initdb.log" 2>&1 || { cat "$TL_SERVICES_DIR/initdb.log" >&2; return 1; }
  if ! _as_pg "$TL_PGBIN/pg_ctl" -D "$TL_PG_DIR/data" -l "$TL_PG_DIR/pg.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $TL_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null; then
    echo "[services] PostgreSQL failed to start; its log:" >&2; cat "$TL_PG_DIR/pg.log" >&2; return 1
  fi
  _as_pg "$TL_PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres mlflow
  _as_pg "$TL_PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres scratch
  export TL_TEST_PG_URI="postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/scratch"
  export TL_PG_PORT=$PGPORT

  # S3 over HTTP: moto's server mode (MinIO in docker-compose.yml).
  S3PORT=$(_free_port)
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
  export MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3PORT
  .venv/bin/moto_server -H 127.0.0.1 -p "$S3PORT" >"$TL_SERVICES_DIR/moto.log" 2>&1 &
  TL_MOTO_PID=$!
  _wait_http "$MLFLOW_S3_ENDPOINT_URL/moto-api/" 60 "moto S3 server" "$TL_SERVICES_DIR/moto.log"
  export TL_TEST_S3_BUCKET=mlflow
  .venv/bin/python -c 'import boto3,os;boto3.client("s3",endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"]).create_bucket(Bucket=os.environ["TL_TEST_S3_BUCKET"])'

  # The MLflow server with our app plugin, on PostgreSQL and the S3 bucket, one worker (see research/infra.md).
  MLPORT=$(_free_port)
  export MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=${MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY:-$(.venv/bin/python -c 'from cryptography.fernet import Fernet;print(Fernet.generate_key().decode())')}
  export TL_WEBHOOK_SECRET=${TL_WEBHOOK_SECRET:-$(.venv/bin/python -c 'import secrets;print(secrets.token_hex(16))')}
  export TL_TEST_SERVER_URI=http://127.0.0.1:$MLPORT
  export TL_MLFLOW_BACKEND_URI="postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/mlflow"
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https \
  MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true MLFLOW_WEBHOOK_CACHE_TTL=1 \
  MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true TRANSFER_LAWS_WEBHOOK_SECRET=$TL_WEBHOOK_SECRET \
    .venv/bin/mlflow server --app-name transfer-laws --host 127.0.0.1 --port "$MLPORT" --workers 1 \
      --backend-store-uri "$TL_MLFLOW_BACKEND_URI" \
      --artifacts-destination "s3://$TL_TEST_S3_BUCKET/" --serve-artifacts \
      >"$TL_SERVICES_DIR/mlflow.log" 2>&1 &
  TL_MLFLOW_PID=$!
  export TL_MLFLOW_LOG=$TL_SERVICES_DIR/mlflow.log
  _wait_http "$TL_TEST_SERVER_URI/health" 180 "mlflow server" "$TL_SERVICES_DIR/mlflow.log"
  echo "[services] PostgreSQL :$PGPORT, S3 $MLFLOW_S3_ENDPOINT_URL, MLflow $TL_TEST_SERVER_URI"
  set +e
}
