#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one (as root):
#   1. sets up the real testbed (LXD and Incus, ZFS via zfs-fuse, btrfs, busybox images in
#      both daemons): scripts/testbed.sh
#   2. checks formatting and lints
#   3. runs every test of the workspace against the real LXD daemon, with the fault-injection
#      feature so the crash tests can kill the real binary at chosen steps;
#   4. runs reroot's integration tests (tests/*.rs) again, the same code, against the real
#      Incus daemon (REROOT_TEST_DAEMON=incus); the unit tests and the journal crate's tests
#      talk to no daemon and run once.
# A missing component is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/testbed.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --features fault-injection -- -D warnings

echo "==> cargo test (LXD)"
started=$SECONDS
REROOT_TEST_DAEMON=lxd cargo test --workspace --features fault-injection
echo "==> LXD tests took $((SECONDS - started)) s"

echo "==> cargo test --test '*' (Incus)"
started=$SECONDS
REROOT_TEST_DAEMON=incus cargo test --features fault-injection --test '*'
echo "==> Incus tests took $((SECONDS - started)) s"
