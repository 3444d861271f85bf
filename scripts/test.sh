#!/usr/bin/env bash
# The one test command: sets up everything the tests need on a fresh Debian machine (as root) and runs
# them all. Starts a private Dovecot (IMAP/IMAPS/LMTP) and Postfix on 127.0.0.1 from scripts/testlab,
# creates a fresh PostgreSQL database on 127.0.0.1:5432, runs fmt/clippy and the whole test suite, and
# stops what it started.
#   env: CI=true   servers that cannot start make tests fail instead of skip (set by .ci/run)
#        INFRA_ROOT, *_PORT   see scripts/testlab/env.sh
#        SKIP_LINT=1          skip cargo fmt/clippy (local iteration)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export INFRA_ROOT="${INFRA_ROOT:-/tmp/inboxd-test-infra}"
export SINK="${SINK:-0}" PROXY="${PROXY:-1}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }
cargo --version

step "mail lab (Dovecot + Postfix on 127.0.0.1)"
cleanup() {
  "$ROOT/scripts/testlab/down.sh" >/dev/null 2>&1 || true
  if [ -n "${PG_DB:-}" ]; then "$ROOT/scripts/testlab/pg.sh" drop "$PG_DB" >/dev/null 2>&1 || true; fi
  # databases the tests created for themselves (tests/common: inboxd_t_<run>_<n>)
  if [ -n "${RUN_ID:-}" ]; then
    for db in $(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'inboxd_t_${RUN_ID}_%'" 2>/dev/null); do
      "$ROOT/scripts/testlab/pg.sh" drop "$db" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT
"$ROOT/scripts/testlab/up.sh"
# shellcheck disable=SC1091
source "$INFRA_ROOT/test-env.sh"

step "PostgreSQL"
RUN_ID="$(date +%s)$$"
export INBOXD_TEST_RUN_ID="$RUN_ID"
PG_DB="inboxd_t_${RUN_ID}_main"
"$ROOT/scripts/testlab/pg.sh" create "$PG_DB"
export INBOXD_TEST_PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres"
export INBOXD_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/$PG_DB"

if [ "${SKIP_LINT:-0}" != 1 ]; then
  step "format and lints"
  cargo fmt --all -- --check
  cargo clippy --all-targets --locked -- -D warnings
fi

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
step "vendored POLYVAL and GHASH: their own tests (vendor/README.md)"
for crate in polyval ghash; do
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/vendor" \
    cargo test --locked --manifest-path "$ROOT/vendor/$crate/Cargo.toml"
done
if [ "${FUZZ:-1}" != 0 ]; then
  step "fuzzing (every target ${FUZZ_SECONDS:-60} s; FUZZ=0 skips)"
  bash "$ROOT/scripts/fuzz.sh"
fi
step "all tests passed"
