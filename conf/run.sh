#!/usr/bin/env bash
# `make run`: Redis and NGINX with the module on loopback, in the
# foreground; Ctrl-C stops exactly what this script started.
#
# Ports: WA_HTTP_PORT (8080), WA_REDIS_PORT (6380).  State: build/run/.

set -euo pipefail

module=$(realpath "${1:-build/ngx_http_whatsapp_module.so}")
top=$(cd "$(dirname "$0")/.." && pwd)
prefix=$top/build/run
http_port=${WA_HTTP_PORT:-8080}
redis_port=${WA_REDIS_PORT:-6380}
pids=()

stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    for pid in "${pids[@]}"; do
        kill -QUIT "$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "stopped."
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for p in "$http_port" "$redis_port"; do
    if ! port_free "$p"; then
        echo "port $p is in use; set WA_HTTP_PORT / WA_REDIS_PORT" >&2
        exit 1
    fi
done

mkdir -p "$prefix/logs" "$prefix/redis"
chmod 755 "$prefix"

# development secrets, created once; never commit real ones
[ -s "$prefix/app_secret" ] || openssl rand -hex 16 > "$prefix/app_secret"
[ -s "$prefix/verify_token" ] || openssl rand -hex 8 > "$prefix/verify_token"
chmod 644 "$prefix/app_secret" "$prefix/verify_token"

redis-server "$top/conf/redis.conf" --port "$redis_port" --bind 127.0.0.1 \
    --dir "$prefix/redis" --daemonize no --logfile "$prefix/logs/redis.log" &
pids+=($!)

for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

sed -e "s|@MODULE@|$module|" -e "s|@PREFIX@|$prefix|g" \
    -e "s|@HTTP_PORT@|$http_port|" -e "s|@REDIS_PORT@|$redis_port|" \
    "$top/conf/nginx.conf" > "$prefix/nginx.conf"

nginx -t -q -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" &
pids+=($!)

for _ in $(seq 50); do
    port_free "$http_port" || break
    sleep 0.1
done

url=http://127.0.0.1:$http_port/whatsapp/webhook

cat <<MSG

  WhatsApp gateway running (NGINX pid ${pids[1]}, Redis pid ${pids[0]}).

  Webhook URL      $url
  Verify token     $(cat "$prefix/verify_token")   ($prefix/verify_token)
  App secret       $prefix/app_secret
  Metrics          http://127.0.0.1:$http_port/whatsapp/status
  Logs             $prefix/logs/

  Watch events arrive (another terminal):
    redis-cli -p $redis_port XREAD BLOCK 0 STREAMS wa:events '\$'

  Send a correctly signed sample event:
    body=\$(cat t/fixtures/text.json); curl -i $url -H "X-Hub-Signature-256: sha256=\$(printf %s "\$body" | openssl dgst -sha256 -hmac "\$(cat $prefix/app_secret)" -r | cut -d' ' -f1)" --data-binary "\$body"

  Meta's verification handshake:
    curl "$url?hub.mode=subscribe&hub.verify_token=\$(cat $prefix/verify_token)&hub.challenge=1234"

  (PostgreSQL and whatsapp-worker join here once they exist.)
  Ctrl-C stops everything.

MSG

wait -n "${pids[@]}"
echo "a process exited; see $prefix/logs/" >&2
