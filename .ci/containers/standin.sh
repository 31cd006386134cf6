#!/bin/sh
# The CI stand-ins' entry point: `standin postgres|redis|store|bucket`, and `standin ready SERVICE`
# for health checks. Host networking: each listens on 127.0.0.1 at $PORT, which the container test
# picks among the free ports.
set -eu
case "$1" in
postgres)
  # As the official image does on first start: a cluster whose superuser is POSTGRES_USER, with a
  # password, and the database POSTGRES_DB.
  data=/var/lib/postgresql/data
  bin=/usr/lib/postgresql/15/bin
  if [ ! -s "$data/PG_VERSION" ]; then
    install -d -o postgres -g postgres -m 0700 "$data"
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/password && chown postgres /tmp/password
    runuser -u postgres -- "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/password \
      --auth=scram-sha-256 >/dev/null
    rm /tmp/password
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" |
      runuser -u postgres -- "$bin/postgres" --single -D "$data" postgres >/dev/null
  fi
  exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses=127.0.0.1 -p "$PORT" -k /tmp
  ;;
redis)
  mkdir -p /data
  exec redis-server --bind 127.0.0.1 --port "$PORT" --dir /data
  ;;
store)
  exec /opt/moto/bin/moto_server -H 127.0.0.1 -p "$PORT"
  ;;
bucket)
  exec /opt/moto/bin/python -c "
import boto3, os
s3 = boto3.client('s3', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1',
                  aws_access_key_id='nanoclone', aws_secret_access_key=os.environ['MINIO_ROOT_PASSWORD'])
s3.create_bucket(Bucket='nanoclone')
"
  ;;
ready)
  case "$2" in
  postgres) exec pg_isready -q -h 127.0.0.1 -p "$PORT" ;;
  redis) [ "$(redis-cli -p "$PORT" ping)" = PONG ] ;;
  store) exec /opt/moto/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/')" ;;
  esac
  ;;
*)
  echo "usage: standin postgres|redis|store|bucket|ready SERVICE" >&2
  exit 2
  ;;
esac
