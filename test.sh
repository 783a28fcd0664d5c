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
echo "==> cargo test"
cargo test --locked --all-targets
