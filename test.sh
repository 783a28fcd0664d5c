#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> systemd units"
if command -v systemd-analyze >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  # Verify the units as installed: the binary path must exist for systemd-analyze.
  for unit in deploy/wacrm.service deploy/wacrm-backup.service deploy/wacrm-backup.timer; do
    sed "s#/opt/wacrm/wacrm#$(command -v true)#" "$unit" > "$tmp/$(basename "$unit")"
  done
  for unit in "$tmp"/*; do systemd-analyze verify "$unit"; done
  rm -rf "$tmp"
fi
echo "==> headless Chromium for the dashboard's browser tests"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium chromium-driver
fi
echo "==> models (the knowledge tests run the real embedding model; cached after the first run)"
bash scripts/fetch-models.sh "$PWD/models"
echo "==> cargo test"
cargo test --locked --all-targets
