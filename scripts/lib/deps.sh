# Installers shared by scripts/test, scripts/run and the benches. Each is idempotent and returns at
# once when its tool is already present. Sourced, not run.

log() { printf '==> %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
}

# nats-server (with JetStream) for the NATS sink tests; the tests start their own instances.
ensure_nats_server() {
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
}

ensure_test_servers() {
  ensure_nats_server
}
