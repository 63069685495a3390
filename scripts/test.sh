#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one (as root):
#   1. sets up the real testbed (LXD, ZFS via zfs-fuse, btrfs, busybox images): scripts/testbed.sh
#   2. checks formatting and lints
#   3. runs every test of the workspace against the real daemon, with the fault-injection
#      feature so the crash tests can kill the real binary at chosen steps.
# A missing component is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/testbed.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --features fault-injection -- -D warnings

echo "==> cargo test"
cargo test --workspace --features fault-injection
