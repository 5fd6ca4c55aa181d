#!/usr/bin/env bash
# `make run`: Redis, PostgreSQL, the worker, NGINX with the module and the
# Graph API simulator (Meta's stand-in) on loopback, in the foreground;
# Ctrl-C stops exactly what this script started.
#
# Ports: WA_HTTP_PORT (8080), WA_REDIS_PORT (6380), WA_PG_PORT (5480),
# WA_SIM_PORT (8090), WA_METRICS_PORT (9464, the worker's metrics).  Real
# credentials: set WA_SENDER_GRAPH_URL (e.g. https://graph.facebook.com)
# and store each number's token with `whatsapp-worker token set ID`; the
# simulator is then not started.
# State (secrets, Redis AOF, the PostgreSQL cluster, logs): build/run/.

set -euo pipefail

module=$(realpath "${1:-build/ngx_http_whatsapp_module.so}")
worker=$(realpath "${2:-build/whatsapp-worker}")
sim=$(realpath "${3:-build/wa-graph-sim}")
top=$(cd "$(dirname "$0")/.." && pwd)
prefix=$top/build/run
http_port=${WA_HTTP_PORT:-8080}
redis_port=${WA_REDIS_PORT:-6380}
pg_port=${WA_PG_PORT:-5480}
sim_port=${WA_SIM_PORT:-8090}
metrics_port=${WA_METRICS_PORT:-9464}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pids=()
sigs=()
names=()

# newest first, each with its own graceful signal
stop() {
    trap "" INT TERM; trap - EXIT
    echo
    echo "stopping..."
    local i sig
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        sig=${sigs[i]}
        kill -"$sig" "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    echo "stopped."
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for p in "$http_port" "$redis_port" "$pg_port" "$sim_port" "$metrics_port"; do
    if ! port_free "$p"; then
        echo "port $p is in use; set WA_HTTP_PORT / WA_REDIS_PORT / WA_PG_PORT / WA_SIM_PORT / WA_METRICS_PORT" >&2
        exit 1
    fi
done

mkdir -p "$prefix/logs" "$prefix/redis"
chmod 755 "$prefix"

# development secrets, created once; never commit real ones
[ -s "$prefix/app_secret" ] || openssl rand -hex 16 > "$prefix/app_secret"
[ -s "$prefix/verify_token" ] || openssl rand -hex 8 > "$prefix/verify_token"
[ -s "$prefix/jwt_secret" ] || openssl rand -hex 32 > "$prefix/jwt_secret"
[ -s "$prefix/token_key" ] || openssl rand -hex 32 > "$prefix/token_key"
chmod 644 "$prefix/app_secret" "$prefix/verify_token" "$prefix/jwt_secret"
chmod 600 "$prefix/token_key"

# a development token (HS256, 24 h, every number); your login service
# issues the real ones
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_body=$(printf '{"sub":"dev-agent","exp":%d,"phone_number_ids":"*"}' \
               $(( $(date +%s) + 86400 )) | b64url)
jwt_head=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
jwt_sig=$(printf %s "$jwt_head.$jwt_body" \
          | openssl dgst -sha256 -mac HMAC \
                    -macopt "key:$(tr -d '\n' < "$prefix/jwt_secret")" -binary \
          | b64url)
token=$jwt_head.$jwt_body.$jwt_sig

# each server in its own session: Ctrl-C reaches this script only, which
# then stops them in order
setsid redis-server "$top/conf/redis.conf" --port "$redis_port" --bind 127.0.0.1 \
    --dir "$prefix/redis" --daemonize no --logfile "$prefix/logs/redis.log" &
pids+=($!) sigs+=(TERM) names+=(Redis)

for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# PostgreSQL refuses to run as root: its cluster belongs to postgres
if [ ! -d "$prefix/pg" ]; then
    install -d -o postgres -g postgres "$prefix/pg"
    su postgres -s /bin/sh -c "$pg_bin/initdb -D '$prefix/pg' -A trust \
        -U postgres -E UTF8 --locale=C.UTF-8" > "$prefix/logs/initdb.log"
fi

# setpriv execs postgres in place: $! is PostgreSQL itself (unlike
# start-stop-daemon, it does not refuse because another cluster, e.g. the
# system's, runs the same binary)
setsid setpriv --reuid=postgres --regid=postgres --init-groups \
    "$pg_bin/postgres" -D "$prefix/pg" -p "$pg_port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$prefix/pg" \
    >> "$prefix/logs/postgres.log" 2>&1 &
pids+=($!) sigs+=(INT) names+=(PostgreSQL)

for _ in $(seq 100); do
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atc 'SELECT 1' \
        >/dev/null 2>&1 && break
    sleep 0.1
done

psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = 'wa'" | grep -q 1 \
    || createdb -h 127.0.0.1 -p "$pg_port" -U postgres wa

export WA_REDIS_PORT=$redis_port
export WA_POSTGRES_CONNINFO="host=127.0.0.1 port=$pg_port dbname=wa user=postgres"
export WA_WORKER_SQL_DIR=$top/sql
export WA_WORKER_CONSUMER=run
export WA_SENDER_TOKEN_KEY_FILE=$prefix/token_key
export WA_WORKER_METRICS_LISTEN=127.0.0.1:$metrics_port

"$worker" -c "$top/conf/whatsapp-worker.conf" migrate \
    >> "$prefix/logs/worker.log" 2>&1

# Meta's stand-in: answers sends with wamids and posts signed status
# webhooks (sent, delivered, read) back to the webhook below
pn=106540352242922
if [ -z "${WA_SENDER_GRAPH_URL:-}" ]; then
    setsid "$sim" --listen "127.0.0.1:$sim_port" \
        --webhook "http://127.0.0.1:$http_port/whatsapp/webhook" \
        --app-secret-file "$prefix/app_secret" --status-delay-ms 500 \
        >> "$prefix/logs/graph-sim.log" 2>&1 &
    pids+=($!) sigs+=(TERM) names+=("the Graph API simulator")
    export WA_SENDER_GRAPH_URL=http://127.0.0.1:$sim_port
    echo "dev-token-$pn" | "$worker" -c "$top/conf/whatsapp-worker.conf" \
        token set "$pn" >> "$prefix/logs/worker.log" 2>&1
fi
setsid "$worker" -c "$top/conf/whatsapp-worker.conf" \
    >> "$prefix/logs/worker.log" 2>&1 &
pids+=($!) sigs+=(TERM) names+=(whatsapp-worker)

sed -e "s|@MODULE@|$module|" -e "s|@PREFIX@|$prefix|g" \
    -e "s|@HTTP_PORT@|$http_port|" -e "s|@REDIS_PORT@|$redis_port|" \
    -e "s|@PG_PORT@|$pg_port|" \
    "$top/conf/nginx.conf" > "$prefix/nginx.conf"

nginx -t -q -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
setsid nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" &
pids+=($!) sigs+=(QUIT) names+=(NGINX)

for _ in $(seq 50); do
    port_free "$http_port" || break
    sleep 0.1
done

url=http://127.0.0.1:$http_port/whatsapp/webhook

cat <<MSG

  WhatsApp gateway running on loopback:$(for i in "${!pids[@]}"; do
      printf '\n    %-26s pid %s' "${names[i]}" "${pids[i]}"; done)

  Webhook URL      $url
  Verify token     $(cat "$prefix/verify_token")   ($prefix/verify_token)
  App secret       $prefix/app_secret
  Metrics          http://127.0.0.1:$http_port/whatsapp/status (NGINX)
                   http://127.0.0.1:$metrics_port/metrics (whatsapp-worker)
  Logs             $prefix/logs/

  Watch realtime updates reach a browser's stream (another terminal):
    curl -N -H "Authorization: Bearer $token" http://127.0.0.1:$http_port/whatsapp/events

  Send a correctly signed sample event (a customer's message, now, with a
  fresh id: it opens the 24-hour window for the reply below):
    body=\$(sed -e "s/\\"timestamp\\":\\"[0-9]*/\\"timestamp\\":\\"\$(date +%s)/" -e "s/wamid\\.[^\\"]*/wamid.sample\$(date +%s%N)/" t/fixtures/text.json); curl -i $url -H "X-Hub-Signature-256: sha256=\$(printf %s "\$body" | openssl dgst -sha256 -hmac "\$(cat $prefix/app_secret)" -r | cut -d' ' -f1)" --data-binary "\$body"

  Meta's verification handshake:
    curl "$url?hub.mode=subscribe&hub.verify_token=\$(cat $prefix/verify_token)&hub.challenge=1234"

  Reply to the customer (inside the 24-hour window the sample opened); the
  stream shows message.new, then message.status accepted, sent, delivered,
  read as the simulator's webhooks come back:
    curl -H "Authorization: Bearer $token" http://127.0.0.1:$http_port/whatsapp/v1/messages -d '{"phone_number_id":"$pn","to":"+16505551234","type":"text","text":{"body":"Yes, in blue."}}'

  See what was stored, through the agent API (a 24-hour development token):
    curl -H "Authorization: Bearer $token" http://127.0.0.1:$http_port/whatsapp/v1/conversations
  or in PostgreSQL:
    psql -h 127.0.0.1 -p $pg_port -U postgres wa -c 'TABLE conversations'

  Ctrl-C stops everything (or, when make run is in the background,
  kill $$ from another shell).

MSG

wait -n "${pids[@]}"
echo "a process exited; see $prefix/logs/" >&2
