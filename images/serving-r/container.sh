#!/bin/sh
# The serving-r image's entry point (run by tini): nginx in front of MLHUB_WORKERS plumber
# processes, one bundle, one container.
#
# One R process answers one request at a time, so "workers" are processes: plumber i listens
# on 127.0.0.1:(9000+i) and nginx takes the public port (MLHUB_PORT, default 8080), spreads
# requests over them, holds slow clients, refuses a body over MLHUB_MAX_BODY_BYTES with the
# contract's JSON 413 before R sees it, and answers a JSON 503 while no plumber answers. nginx
# talks to plumber with one request per connection, so httpuv's Nagle delay never applies, and
# to clients with keep-alive and TCP_NODELAY.
#
# The container stops as a whole when any of its processes exits (the orchestrator restarts it):
# SIGTERM is passed to all of them (nginx finishes its requests first).
set -eu

PORT=${MLHUB_PORT:-8080}
WORKERS=${MLHUB_WORKERS:-1}
LIMIT=${MLHUB_MAX_BODY_BYTES:-16777216}
TIMEOUT=${MLHUB_REQUEST_TIMEOUT:-60}
RUN=/tmp/mlhub-serving-r
SERVE=/opt/mlhub/mlhub/serving_r/serve.R
export MLHUB_BUNDLE=${MLHUB_BUNDLE:-/var/lib/mlhub/bundle}

case "$WORKERS" in ''|*[!0-9]*|0) echo "serving-r: MLHUB_WORKERS=$WORKERS is not a whole number >= 1" >&2; exit 2;; esac
rm -rf "$RUN/metrics"
mkdir -p "$RUN/metrics"
# every plumber process writes its counters here; /metrics sums them (runtime/metrics.R)
export MLHUB_METRICS_DIR="$RUN/metrics"

upstreams=""
i=1
while [ "$i" -le "$WORKERS" ]; do
  upstreams="$upstreams        server 127.0.0.1:$((9000 + i)) max_fails=0;
"
  i=$((i + 1))
done

cat >"$RUN/nginx.conf" <<NGINX
# Written by serving-r's container.sh at start; the settings come from the environment.
worker_processes 1;
pid $RUN/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path $RUN/client_body;
    proxy_temp_path $RUN/proxy;
    fastcgi_temp_path $RUN/fastcgi;
    uwsgi_temp_path $RUN/uwsgi;
    scgi_temp_path $RUN/scgi;
    client_max_body_size $LIMIT;
    client_body_buffer_size 1m;
    client_body_timeout ${TIMEOUT}s;
    send_timeout ${TIMEOUT}s;
    keepalive_timeout 75s;
    tcp_nodelay on;
    upstream plumber {
$upstreams    }
    server {
        listen $PORT;
        location / {
            proxy_pass http://plumber;
            proxy_set_header Host \$host;
            proxy_read_timeout $((TIMEOUT + 5))s;
            proxy_send_timeout ${TIMEOUT}s;
            proxy_next_upstream error timeout;
        }
        error_page 413 @too_large;
        location @too_large {
            default_type application/json;
            return 413 '{"error": "the request body is larger than the limit of $LIMIT bytes: send fewer rows per request", "code": "payload_too_large", "detail": {"limit": $LIMIT}}';
        }
        error_page 502 504 @starting;
        location @starting {
            default_type application/json;
            return 503 '{"error": "the model server is starting or restarting: retry shortly", "code": "not_ready", "detail": null}';
        }
    }
}
NGINX

pids=""
stop() {
  trap - TERM INT
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  wait
  exit 0
}
trap stop TERM INT

i=1
while [ "$i" -le "$WORKERS" ]; do
  MLHUB_WORKER_ID=$i Rscript "$SERVE" --port $((9000 + i)) --host 127.0.0.1 &
  pids="$pids $!"
  i=$((i + 1))
done
nginx -c "$RUN/nginx.conf" -g 'daemon off;' &
pids="$pids $!"
echo "serving-r: nginx on :$PORT -> $WORKERS plumber process(es) serving $MLHUB_BUNDLE" >&2

# Any process that exits ends the container (a restarted container is whole again).
while :; do
  for pid in $pids; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "serving-r: process $pid exited; stopping the container" >&2
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      wait
      exit 1
    fi
  done
  sleep 1
done
