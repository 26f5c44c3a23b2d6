#!/bin/sh
# moltconsole sandbox entrypoint. PID 1 is tini; this script renders openclaw.json and then
# exec's the gateway, so the gateway is tini's only child and its exit code becomes the
# container's (78 = invalid configuration, 0 = clean stop, 128+N = killed by signal N).
#
# Arguments: none, or only options such as --verbose -> render the config and run the gateway
# with those options appended. Anything else (openclaw doctor, sh, ...) is exec'd as given.
set -eu

: "${OPENCLAW_STATE_DIR:=/data/state}"
: "${MOLT_LOG_DIR:=/data/logs}"
: "${OPENCLAW_PACKAGE_DIR:=/usr/local/lib/node_modules/openclaw}"
: "${HOME:=${OPENCLAW_STATE_DIR}/home}"
export OPENCLAW_STATE_DIR MOLT_LOG_DIR OPENCLAW_PACKAGE_DIR HOME

fail() {
    code=$1
    shift
    echo "moltconsole-entrypoint: $*" >&2
    exit "$code"
}

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    mkdir -p "$HOME" 2>/dev/null || true
    exec "$@"
fi

uid=$(id -u)
for dir in "$OPENCLAW_STATE_DIR" "$MOLT_LOG_DIR"; do
    mkdir -p "$dir" 2>/dev/null || true
    [ -d "$dir" ] && [ -w "$dir" ] \
        || fail 73 "$dir is not a writable directory for uid $uid: mount a host directory owned by uid $uid there"
done
tmp=${TMPDIR:-/tmp}
[ -d "$tmp" ] && [ -w "$tmp" ] \
    || fail 73 "$tmp is not writable: with --read-only, give the container a tmpfs there (--tmpfs /tmp)"
mkdir -p "$HOME" || fail 73 "cannot create HOME=$HOME as uid $uid"
if [ -n "${XDG_CACHE_HOME:-}" ]; then
    mkdir -p "$XDG_CACHE_HOME" || fail 73 "cannot create XDG_CACHE_HOME=$XDG_CACHE_HOME (is /tmp a writable tmpfs?)"
fi

[ -n "${OPENCLAW_GATEWAY_TOKEN:-}" ] \
    || fail 78 "OPENCLAW_GATEWAY_TOKEN is empty: the gateway listens beyond loopback and needs a token"

node /opt/moltconsole/render-config.mjs

heap=${MOLT_NODE_MAX_OLD_SPACE_MB:-0}
case "$heap" in
    '' | *[!0-9]*) fail 78 "MOLT_NODE_MAX_OLD_SPACE_MB='$heap' is not a whole number of MiB" ;;
esac
if [ "$heap" -gt 0 ]; then
    exec node "--max-old-space-size=$heap" "$OPENCLAW_PACKAGE_DIR/openclaw.mjs" \
        gateway run --port 18789 --bind lan "$@"
fi
exec node "$OPENCLAW_PACKAGE_DIR/openclaw.mjs" gateway run --port 18789 --bind lan "$@"
