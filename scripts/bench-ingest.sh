#!/usr/bin/env bash
# Ingest benchmark: `scripts/bench-ingest.sh N` (run as root; default N = 2000).
#
# 1. Generates N realistic support messages once (scripts/bench/gen_corpus.py, fixed seed; cached under
#    $BENCH_CACHE/corpus-N-sSEED, reused by later runs).
# 2. Starts the loopback mail lab if it is not running (scripts/testlab/up.sh, SINK=0; stopped again at the
#    end only if this script started it) and loads the corpus into a fresh folder `bench-N` of its own user
#    (bob@inboxd.test by default), written directly as Maildir files, then checks the count with SELECT.
# 3. Measures in one run, each process under /usr/bin/time -v:
#    (a) a bare IMAP client (Python imaplib, implicit TLS, UID FETCH BODY.PEEK[] in batches of 500);
#    (b) `inboxd sync --once --json` ingesting the folder into a fresh data dir (release build), search
#        indexing included (the index is committed and closed before the process exits);
#    (c) unless BENCH_NO_INDEX=0: the same with `--no-index` into another fresh data dir, to price indexing.
# 4. Prints msg/s, MB/s, peak RSS, CPU for each (and the whole machine's busy CPU over the same time, from
#    /proc/stat: what the process leaves to others is mostly Dovecot serving it), the ratio (b)/(a) and PASS/FAIL against the targets
#    (ratio >= 0.60, inboxd peak RSS < 256 MB; with (c): indexing adds at most 20% to ingest time,
#    i.e. wall (b) <= 1.2 x wall (c)); writes $BENCH_CACHE/results/<stamp>-N.json.
# 5. Deletes the bench folder and inboxd's data dir (the corpus cache stays).
#
# Exit: 0 targets met, 3 a target missed, 2 a run incomplete (wrong count, inboxd error), 1 setup failure.
#
# env: BENCH_SEED (42)                corpus seed
#      BENCH_CACHE (/tmp/inboxd-bench) corpus cache, run dirs, results
#      BENCH_USER (bob)                lab user whose Maildir gets the bench-N folder
#      BENCH_BATCH (500)               bare client batch size
#      BENCH_TARGET_DIR (<repo>/target) CARGO_TARGET_DIR of the release build
#      INBOXD_BIN                      use this binary instead of building one
#      BENCH_LOG_LEVEL (warn)          inboxd --log-level (e.g. info); its log goes to the run dir
#      BENCH_INGEST_TOML               extra lines for the config's [ingest] table (e.g. "batch_size = 500")
#      BENCH_NO_INDEX (1)              0: skip run (c), the ingest without search indexing
#      BENCH_KEEP=1                    keep the bench folder and data dir (to inspect them)
#      INFRA_ROOT (/tmp/inboxd-test-infra) and the lab's port knobs, see scripts/testlab/env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/scripts/bench"
N="${1:-2000}"
case "$N" in '' | *[!0-9]*) echo "usage: $0 N   (N = number of messages, e.g. 50000)" >&2; exit 1 ;; esac
[ "$N" -gt 0 ] || { echo "N must be > 0" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root (the lab's Maildirs belong to vmail)" >&2; exit 1; }
export INFRA_ROOT="${INFRA_ROOT:-/tmp/inboxd-test-infra}"
SEED="${BENCH_SEED:-42}"
CACHE="${BENCH_CACHE:-/tmp/inboxd-bench}"
BUSER="${BENCH_USER:-bob}"
BATCH="${BENCH_BATCH:-500}"
FOLDER="bench-$N"
PY="${PYTHON:-python3}"
T_START=$(date +%s.%N)

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { "$PY" -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }
command -v /usr/bin/time >/dev/null || die "/usr/bin/time missing (apt-get install time)"
# Busy CPU seconds of the whole machine so far (user, nice, system, irq, softirq of every process, not the
# hypervisor's steal): the server's share of a run shows up here.
busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2+$3+$4+$7+$8)/hz; exit}' /proc/stat; }

# --- 1. corpus --------------------------------------------------------------------------------------------
CORPUS="$CACHE/corpus-$N-s$SEED"
mkdir -p "$CACHE/results"
t=$(now)
if [ -f "$CORPUS/manifest.json" ]; then
  say "corpus cached: $CORPUS"
else
  say "generating $N messages (seed $SEED) into $CORPUS"
  nice -n 5 "$PY" "$BENCH/gen_corpus.py" --count "$N" --seed "$SEED" --out "$CORPUS"
fi
T_GEN=$(since "$t")
TOTAL_BYTES=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$CORPUS/manifest.json")

# --- inboxd binary (release) ------------------------------------------------------------------------------
t=$(now)
if [ -z "${INBOXD_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$ROOT/target}"
  say "building inboxd (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && nice cargo build --release --locked --bin inboxd 2>&1 | tail -3 >&2)
  INBOXD_BIN="$CARGO_TARGET_DIR/release/inboxd"
fi
[ -x "$INBOXD_BIN" ] || die "inboxd binary not found: $INBOXD_BIN"
T_BUILD=$(since "$t")

# --- 2. lab + load ----------------------------------------------------------------------------------------
LAB_STARTED=0
RUN=""
lab_env() {
  # shellcheck disable=SC1091
  [ -f "$INFRA_ROOT/test-env.sh" ] && source "$INFRA_ROOT/test-env.sh"
}
lab_env || true
if [ -z "${INBOXD_TEST_IMAPS_PORT:-}" ] || ! (exec 3<>"/dev/tcp/127.0.0.1/$INBOXD_TEST_IMAPS_PORT") 2>/dev/null; then
  say "mail lab not running: starting it (scripts/testlab/up.sh, SINK=0)"
  SINK=0 "$ROOT/scripts/testlab/up.sh" >&2
  LAB_STARTED=1
  lab_env || die "no $INFRA_ROOT/test-env.sh after up.sh"
fi
export BENCH_IMAP_HOST=127.0.0.1 BENCH_IMAP_PORT="$INBOXD_TEST_IMAPS_PORT" BENCH_IMAP_CA="$INBOXD_TEST_IMAP_CA"
export BENCH_IMAP_USER="$BUSER@$INBOXD_TEST_DOMAIN" BENCH_IMAP_PASSWORD="$INBOXD_TEST_IMAP_PASSWORD"
MAILDIR="$INFRA_ROOT/mail/$BUSER/Maildir"

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    "$PY" "$BENCH/imap_tool.py" delete "$FOLDER" 2>/dev/null || true
    rm -rf "${MAILDIR:?}/.$FOLDER"
    [ -n "$RUN" ] && rm -rf "$RUN"
  else
    say "kept: folder $FOLDER ($MAILDIR/.$FOLDER), run dir $RUN"
  fi
  if [ "$LAB_STARTED" = 1 ]; then "$ROOT/scripts/testlab/down.sh" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t=$(now)
say "loading $N messages into $BENCH_IMAP_USER folder $FOLDER (Maildir files)"
"$PY" "$BENCH/imap_tool.py" reset "$FOLDER"
[ -d "$MAILDIR/.$FOLDER" ] || die "Dovecot did not create $MAILDIR/.$FOLDER (mail_location changed?)"
"$PY" "$BENCH/load_maildir.py" --corpus "$CORPUS" --folder "$MAILDIR/.$FOLDER" --owner vmail >/dev/null
COUNT=$("$PY" "$BENCH/imap_tool.py" count "$FOLDER")  # first SELECT: Dovecot indexes the folder here
[ "$COUNT" = "$N" ] || die "SELECT $FOLDER reports $COUNT messages, expected $N"
T_LOAD=$(since "$t")
say "folder $FOLDER holds $COUNT messages ($(( TOTAL_BYTES / 1000000 )) MB); load + index took ${T_LOAD}s"

RUN=$(mktemp -d "$CACHE/run-$N.XXXXXX")
chmod 700 "$RUN"
sync  # flush the written files now, not during a measurement

# --- 3a. bare client --------------------------------------------------------------------------------------
say "(a) bare imaplib client: UID FETCH BODY.PEEK[] in batches of $BATCH"
t=$(now)
b0=$(busy)
/usr/bin/time -v -o "$RUN/a.time" "$PY" "$BENCH/imap_tool.py" fetch "$FOLDER" --batch "$BATCH" > "$RUN/a.json" || true
since "$t" > "$RUN/a.wall"
echo "$b0 $(busy)" > "$RUN/a.busy"

# --- inboxd runs -----------------------------------------------------------------------------------------
printf '%s' "$BENCH_IMAP_PASSWORD" > "$RUN/imap.password"
chmod 600 "$RUN/imap.password"
# inboxd_config DATA_DIR: the config of one inboxd run, on stdout.
inboxd_config() {
  cat <<TOML
# written by scripts/bench-ingest.sh
data_dir = "$1"

[ingest]
${BENCH_INGEST_TOML:-}

[[mailbox]]
name = "bench"
kind = "imap"
host = "127.0.0.1"
port = $BENCH_IMAP_PORT
tls = "implicit"
username = "$BENCH_IMAP_USER"
password_file = "$RUN/imap.password"
ca_file = "$BENCH_IMAP_CA"
folders = ["$FOLDER"]
TOML
}
# inboxd_run SIDE DATA_DIR [sync flags...]: one timed `inboxd sync --once` into a fresh data dir.
inboxd_run() {
  local side=$1 data=$2
  shift 2
  inboxd_config "$data" > "$RUN/inboxd-$side.toml"
  say "($side) inboxd sync --once $* ($INBOXD_BIN, log level ${BENCH_LOG_LEVEL:-warn}, log $RUN/$side.log)"
  sync  # the previous run's writes are flushed now, not during this measurement
  local t
  local t b0
  t=$(now)
  b0=$(busy)
  /usr/bin/time -v -o "$RUN/$side.time" "$INBOXD_BIN" --config "$RUN/inboxd-$side.toml" \
    --log-level "${BENCH_LOG_LEVEL:-warn}" sync --once --json "$@" > "$RUN/$side.json" 2> "$RUN/$side.log" || true
  since "$t" > "$RUN/$side.wall"
  echo "$b0 $(busy)" > "$RUN/$side.busy"
}

# --- 3b. inboxd sync --once (indexing on) ------------------------------------------------------------------
inboxd_run b "$RUN/data"
DATA_MB=$(du -sm "$RUN/data" 2>/dev/null | cut -f1 || echo "?")

# --- 3c. inboxd sync --once --no-index -------------------------------------------------------------------
if [ "${BENCH_NO_INDEX:-1}" != 0 ]; then
  inboxd_run c "$RUN/data-noindex" --no-index
  rm -rf "$RUN/data-noindex"
fi

# --- 4. report ---------------------------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
rc=0
"$PY" "$BENCH/report.py" --run-dir "$RUN" --count "$N" --total-bytes "$TOTAL_BYTES" \
  --json-out "$CACHE/results/$STAMP-$N.json" || rc=$?
echo "inboxd data dir after sync: ${DATA_MB} MB"
if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
  echo "--- inboxd stderr (last 20 lines) ---"; tail -20 "$RUN/b.log" || true
  echo "--- bare client stdout ---"; cat "$RUN/a.json" || true
fi
cp "$RUN/b.log" "$CACHE/results/$STAMP-$N.inboxd.log" 2>/dev/null || true
echo "phases: corpus ${T_GEN}s, build ${T_BUILD}s, load+index ${T_LOAD}s, total $(since "$T_START")s; results $CACHE/results/$STAMP-$N.json"
exit "$rc"
