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
  ensure_kafka_build_deps
}

# nats-server (with JetStream) for the NATS sink tests; the tests start their own instances.
ensure_nats_server() {
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
}

# librdkafka (crate rdkafka) is built from source: it needs a C toolchain, make, and the headers
# of OpenSSL (TLS, SASL SCRAM) and zlib (gzip). Needed to build kaudit at all.
ensure_kafka_build_deps() {
  local missing=()
  command -v cc >/dev/null || missing+=(gcc)
  command -v make >/dev/null || missing+=(make)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  [ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# tansu, a Kafka-protocol broker, for the kafka sink tests (cargo install, ~11 min once; reused
# from ~/.cargo/bin afterwards).
ensure_tansu() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  [ -x "$bin" ] && return
  log "cargo install tansu (once; takes a while)"
  cargo install --quiet tansu --features dynostore
}

# moto's AWS server (SNS + SQS for the sns sink, S3 for the s3 sink, CloudWatch Logs for the eks
# source), in a venv under .tools/.
ensure_moto() {
  local venv=.tools/venv
  [ -x "$venv/bin/moto_server" ] && return
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  log "pip install moto[server] into $venv"
  "$venv/bin/pip" install --quiet 'moto[server]'
}

# Google's Pub/Sub emulator (Java) for the pubsub sink and gke source tests, from the Google Cloud
# SDK's Debian package (Google's apt repository is added when the package is not installable).
ensure_pubsub_emulator() {
  local bin=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
  [ -x "$bin" ] && command -v java >/dev/null && return
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    if [ ! -x "$bin" ] && ! apt-cache show google-cloud-cli-pubsub-emulator >/dev/null 2>&1; then
      command -v curl >/dev/null && command -v gpg >/dev/null || apt_install curl gnupg ca-certificates
      log "adding Google's apt repository (packages.cloud.google.com)"
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
        gpg --dearmor --yes -o /usr/share/keyrings/cloud.google.gpg
      echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
        >/etc/apt/sources.list.d/google-cloud-sdk.list
      apt_updated=""
    fi
    [ -x "$bin" ] || apt_install google-cloud-cli-pubsub-emulator
    command -v java >/dev/null || apt_install default-jre-headless
    [ -x "$bin" ] && command -v java >/dev/null && return
  fi
  local msg="Pub/Sub emulator missing: need $bin (apt-get install google-cloud-cli-pubsub-emulator from Google's apt repository) and java (apt-get install default-jre-headless)"
  if [ "${CI:-}" = true ]; then
    echo "$msg" >&2
    exit 1
  fi
  log "$msg; the pubsub and gke tests will be skipped"
}

# The servers of the log, SIEM and broker sink tests, from Debian: rsyslog with its GnuTLS driver
# (syslog over TLS), redis-server, mosquitto (with mosquitto_passwd) and rabbitmq-server. The
# tests start their own instances on ephemeral ports; a service the package starts is not used.
ensure_siem_servers() {
  local missing=()
  [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
  compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || missing+=(rsyslog-gnutls)
  [ -x /usr/bin/redis-server ] || missing+=(redis-server)
  [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# Prometheus Alertmanager for the alertmanager sink tests; the tests start their own instances
# on ephemeral ports (a service the package may start on :9093 is not used).
ensure_alertmanager() {
  command -v prometheus-alertmanager >/dev/null || [ -x /usr/bin/prometheus-alertmanager ] \
    || apt_install --no-install-recommends prometheus-alertmanager
}

# PostgreSQL for the console's shared-store tests: only the server binaries (initdb, pg_ctl)
# are used; each test starts its own cluster in a temp dir on a free port, as the `postgres`
# user (the package creates it). A cluster the package may start on :5432 is not used.
ensure_postgres() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
}

# Headless Chromium (Debian's package, never a browser download) and playwright-core from npm
# into .tools/console-browser, for the console's browser tests (executablePath=/usr/bin/chromium).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  command -v node >/dev/null || apt_install nodejs npm
  local dir=.tools/console-browser
  [ -d "$dir/node_modules/playwright-core" ] && return
  mkdir -p "$dir"
  log "npm install playwright-core into $dir"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund \
    --prefix . playwright-core@1 >/dev/null)
}

ensure_test_servers() {
  ensure_postgres
  ensure_chromium
  ensure_nats_server
  ensure_siem_servers
  ensure_alertmanager
  ensure_tansu
  ensure_moto
  ensure_pubsub_emulator
}

# The kube test harness (tests/it/kube): kube-apiserver, kube-controller-manager, kubectl, etcd
# and helm, built with Go from their modules (tests/kube/) into .tools/kube/bin. Go must be
# there (the module proxy is the only download); the first build takes a long while (README),
# afterwards it returns at once, and after a fresh clone Go's caches make it a matter of linking.
ensure_kube() {
  if ! command -v go >/dev/null; then
    local msg="go not found: the kube tests need Go (1.26) to build kube-apiserver and friends"
    if [ "${CI:-}" = true ]; then
      echo "$msg" >&2
      exit 1
    fi
    log "$msg; the kube tests will be skipped"
    return
  fi
  tests/kube/build.sh
}
