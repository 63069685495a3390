#!/usr/bin/env bash
# Fleet scale run (as root): N busybox websites with their data on plain directories, rebuilt
# between two templates at a few --parallel levels (wall time, peak RSS, downtime p50/p95/max
# of each round), then a --parallel 8 rebuild SIGKILLed while websites are inside their downtime
# window and resumed once. At the end every website must run on the new template with its data
# byte-identical; any failed check makes the exit status non-zero. Each round rebuilds every
# website onto the other template (v1 on reroot-old, v2 on reroot-new); they are launched on
# whichever one makes the last round, the killed one, go onto v2.
#
# Usage: scripts/scale.sh [N]   (default 10)
#
# Environment (defaults in brackets):
#   LEVELS        ["1 4 8"]  --parallel of each timed round, in order ("" = none: only the
#                            launch, the killed rebuild and the checks)
#   KILL_PARALLEL [8]        --parallel of the rebuild that is killed and resumed
#   STOP_TIMEOUT  [0]        --stop-timeout of every rebuild (0 = force at once)
#   MAX_DOWN      [0]        --max-down of the timed rounds and the killed rebuild (0 = as many
#                            as --parallel)
#   KILL_JITTER_MS [1500]    the kill comes a random 0..KILL_JITTER_MS ms after the first
#                            website of that rebuild began stopping (then as soon as one is
#                            between its stop and its start)
#   SEED          [random]   seeds that random delay (bash $RANDOM), to repeat a run
#   PREFIX        [sc]       names: PREFIX-001..., templates PREFIX-tpl-v1 and PREFIX-tpl-v2
#   SCRATCH       [/var/tmp/reroot-scale]  configs, data directories, logs, and the journal of
#                            this script (SCRATCH/journal; the default journal is not touched)
#   KEEP          [0]        1: keep the instances, profiles and SCRATCH at the end
#   PLACEMENT     [instance] device-placement of the websites: instance, or profile (lxdops'
#                            one profile per website), to measure what the profiles cost
#
# Whatever a previous run with the same PREFIX left (instances PREFIX-*, their profiles,
# SCRATCH) is removed first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
count=${1:-10}
[[ "$count" =~ ^[0-9]+$ && "$count" -ge 1 ]] || { echo "usage: $0 [NUMBER-OF-WEBSITES]" >&2; exit 2; }
LEVELS=${LEVELS-"1 4 8"}
KILL_PARALLEL=${KILL_PARALLEL:-8}
STOP_TIMEOUT=${STOP_TIMEOUT:-0}
MAX_DOWN=${MAX_DOWN:-0}
KILL_JITTER_MS=${KILL_JITTER_MS:-1500}
PREFIX=${PREFIX:-sc}
SCRATCH=${SCRATCH:-/var/tmp/reroot-scale}
KEEP=${KEEP:-0}
PLACEMENT=${PLACEMENT:-instance}
[[ "$PLACEMENT" = instance || "$PLACEMENT" = profile ]] || { echo "scale: PLACEMENT must be instance or profile" >&2; exit 2; }
for level in $LEVELS $KILL_PARALLEL; do
    [[ "$level" =~ ^[1-9][0-9]*$ ]] || { echo "scale: bad --parallel level '$level'" >&2; exit 2; }
done
[[ "$PREFIX" =~ ^[a-z][a-z0-9]*$ ]] || { echo "scale: PREFIX must be lowercase letters and digits" >&2; exit 2; }
[[ "$SCRATCH" = /* && "$SCRATCH" != / ]] || { echo "scale: SCRATCH must be an absolute path" >&2; exit 2; }
[ -z "${SEED:-}" ] || RANDOM=$SEED
[ "$(id -u)" = 0 ] || { echo "scale: must run as root" >&2; exit 2; }

bash scripts/testbed.sh

for tool in time:/usr/bin/time jq:jq; do
    command -v "${tool#*:}" >/dev/null || {
        echo "==> installing ${tool%%:*}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool%%:*}" >/dev/null
    }
done

echo "==> building reroot (release)"
cargo build --release --quiet
target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory) ||
    target=${CARGO_TARGET_DIR:-$repo/target}
reroot="$target/release/reroot"
[ -x "$reroot" ] || { echo "scale: no binary at $reroot" >&2; exit 1; }
journal="$SCRATCH/journal"
rr() { "$reroot" --journal "$journal" "$@"; }

width=${#count}
[ "$width" -ge 3 ] || width=3
sites=()
for i in $(seq 1 "$count"); do sites+=("$(printf '%s-%0*d' "$PREFIX" "$width" "$i")"); done
tpl_old="$PREFIX-tpl-v1" # on reroot-old
tpl_new="$PREFIX-tpl-v2" # on reroot-new

# Everything this script creates: the instances named PREFIX-* (websites, templates, their
# PREFIX-*-new-RUN and PREFIX-*-old-RUN roots), their device profiles, SCRATCH.
words() { tr '\n' ' ' | sed 's/ *$//'; } # lines -> one line
ours() { lxc list -c n -f csv | grep "^$PREFIX-" || true; }
our_profiles() { lxc profile list -f csv | cut -d, -f1 | grep "^$PREFIX-.*\.reroot\$" || true; }
cleanup() {
    local names profiles
    names=$(ours)
    for n in $names; do lxc delete -f "$n" >/dev/null || true; done
    profiles=$(our_profiles)
    for p in $profiles; do lxc profile delete "$p" >/dev/null || true; done
    rm -rf "$SCRATCH"
    echo "    removed $(grep -c . <<<"$names" || true) instances, $(grep -c . <<<"$profiles" || true) profiles, $SCRATCH"
    if [ -n "$(ours)$(our_profiles)" ]; then
        echo "scale: could not remove: $(ours | words) $(our_profiles | words)" >&2
        return 1
    fi
}

echo "==> removing what an earlier scale run with prefix $PREFIX left"
cleanup
mkdir -p "$SCRATCH/cfg" "$SCRATCH/fs" "$SCRATCH/log"
cfg="$SCRATCH/cfg"
logs="$SCRATCH/log"

# ---------------------------------------------------------------------------------------------
echo "==> configs of $count websites and 2 templates in $cfg"
cat >"$cfg/base.yaml" <<EOF
#lxdops
# Shared by the templates and the websites of the scale run: data on a plain directory.
ostype: busybox
profiles:
  - default
device-owner: 100000:100000
device-placement: $PLACEMENT
properties:
  scratch: $SCRATCH
  template: $tpl_old
  template-image: reroot-old
filesystems:
  data:
    kind: dir
    pattern: (scratch)/fs/(instance)
devices:
  www:
    path: /var/www
    filesystem: data
  log:
    path: /var/log/site
    filesystem: data
    dir: log
cloud-config-files:
  - site.cfg
stop-timeout: 10
health-check:
  command: test -d /var/www && test -f /etc/motd
  timeout: 10
EOF
cat >"$cfg/site.cfg" <<'EOF'
#cloud-config
write_files:
  - path: /etc/motd
    content: |
      This container is managed by reroot (scale run).
runcmd:
  - mkdir -p /var/www/html
EOF
printf '#lxdops\ndescription: scale template\ninclude:\n  - base.yaml\nimage: (template-image)\n' \
    >"$cfg/$tpl_old.yaml"
cp "$cfg/$tpl_old.yaml" "$cfg/$tpl_new.yaml"
site_cfgs=()
for s in "${sites[@]}"; do
    printf '#lxdops\ndescription: scale website %s\ninclude:\n  - base.yaml\norigin: (template)/base\ndevice-template: (template)\n' \
        "$s" >"$cfg/$s.yaml"
    site_cfgs+=("$cfg/$s.yaml")
done
rr config verify "$cfg/$tpl_old.yaml" "${site_cfgs[@]}" >/dev/null

# The run id a rebuild printed on its stderr ("reroot: run ID").
run_of() { sed -n 's/^reroot: run \([0-9a-f-]*\)$/\1/p' "$1" 2>/dev/null | head -1 || true; }

# The rounds alternate the websites' template, and the last one (the killed rebuild) goes to
# the new template: so the websites are launched on whichever template the first round leaves.
read -r -a levels <<<"$LEVELS"
rounds=$((${#levels[@]} + 1))
target_of_round() { # 1-based round number -> template
    if [ $(((rounds - $1) % 2)) = 0 ]; then echo "$tpl_new"; else echo "$tpl_old"; fi
}
image_of() { if [ "$1" = "$tpl_new" ]; then echo reroot-new; else echo reroot-old; fi; }
launch_tpl=$([ "$(target_of_round 1)" = "$tpl_new" ] && echo "$tpl_old" || echo "$tpl_new")

for pair in "$tpl_old:reroot-old" "$tpl_new:reroot-new"; do
    t=${pair%%:*}
    image=${pair#*:}
    echo "==> template $t on $image, snapshot base"
    rr rebuild --stop-timeout 0 -P "template-image=$image" "$cfg/$t.yaml" >"$logs/$t.out" 2>&1 ||
        { cat "$logs/$t.out" >&2; exit 1; }
    rr snapshot --root-only -s base -P "template-image=$image" "$cfg/$t.yaml" >>"$logs/$t.out" 2>&1 ||
        { cat "$logs/$t.out" >&2; exit 1; }
done

echo "==> launching $count websites on $launch_tpl ($(image_of "$launch_tpl")) (--parallel 8)"
SECONDS=0
rr rebuild --parallel 8 --stop-timeout "$STOP_TIMEOUT" -P "template=$launch_tpl" "${site_cfgs[@]}" \
    >"$logs/launch.out" 2>&1 || { tail -20 "$logs/launch.out" >&2; exit 1; }
launch_s=$SECONDS
rr prune "$(run_of "$logs/launch.out")" >/dev/null

echo "==> writing data into each website (from inside the container)"
declare -A sums
site_sum() {
    local d="$SCRATCH/fs/$1"
    cat "$d/www/orders.txt" "$d/www/blob.bin" "$d/log/app.log" | sha256sum | cut -d' ' -f1
}
for s in "${sites[@]}"; do
    lxc exec "$s" -- sh -c "echo 'orders of $s' > /var/www/orders.txt; \
        dd if=/dev/urandom of=/var/www/blob.bin bs=1k count=64 2>/dev/null; \
        echo 'log of $s' >> /var/log/site/app.log; touch /root/only-in-old-root; sync"
    sums[$s]=$(site_sum "$s")
done

# ---------------------------------------------------------------------------------------------
# Downtimes (ms) of a run, one a line, sorted: the `start` step's output of each instance.
downtimes() {
    rr --json show "$1" | jq -r '.instances[] | [.steps[] | select(.name == "start" and .status == "Succeeded")]
        | last | select(. != null) | .output.downtime_ms' | sort -n
}
# pct P: the P-th percentile (nearest rank) of the numbers on stdin, sorted.
pct() { awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
    r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'; }
ms() { awk '{ if ($1 == "-") print "-"; else printf "%.2f", $1 / 1000 }'; } # ms -> s
# The website of a run with the longest downtime, and how long each of its steps from stop to
# start took.
slowest() {
    rr --json show "$1" | jq -r '[.instances[]
        | { name, steps, dt: ([.steps[] | select(.name == "start" and .status == "Succeeded")]
              | last | if . == null then null else (.output.downtime_ms) end) }
        | select(.dt != null)] | max_by(.dt) | select(. != null)
        | "\(.name) \(.dt / 1000) s: " + ([.steps[] | select(.ended_at_ms != null)
              | select(.name | IN("stop", "snapshot", "retire", "swap", "reattach", "files", "start"))
              | "\(.name) \(.ended_at_ms - .started_at_ms)"] | join(", ")) + " (ms)"'
}
# Warnings reroot logged (e.g. a lost LXD file helper, waited out for 17 s).
warnings() { grep -c 'WARN' "$1" || true; }

failures=()
rows=()
slow=()
round=0
for level in "${levels[@]}"; do
    round=$((round + 1))
    to=$(target_of_round "$round")
    echo "==> round $round: rebuild $count websites onto $to ($(image_of "$to")), --parallel $level"
    out="$logs/round-$round.out"
    rc=0
    /usr/bin/time -f '%e %M' -o "$logs/round-$round.time" "$reroot" --journal "$journal" rebuild \
        --parallel "$level" --max-down "$MAX_DOWN" --stop-timeout "$STOP_TIMEOUT" -P "template=$to" \
        "${site_cfgs[@]}" >"$out" 2>&1 || rc=$?
    read -r wall rss < <(tail -1 "$logs/round-$round.time")
    run=$(run_of "$out")
    dts=$(downtimes "$run" || true)
    n=$(echo "$dts" | grep -c . || true)
    rows+=("$(printf '%-6s %-9s %-11s %4s %8s %9s %8s %8s %8s %6s %5s' "$round" "$level" "$(image_of "$to")" "$rc" \
        "$wall" "$((rss / 1024))" "$(pct 50 <<<"$dts" | ms)" "$(pct 95 <<<"$dts" | ms)" \
        "$(pct 100 <<<"$dts" | ms)" "$n/$count" "$(warnings "$out")")")
    slow+=("round $round: $(slowest "$run" || true)")
    echo "    run ${run:0:8}: exit $rc, ${wall} s, peak RSS $((rss / 1024)) MiB"
    if [ "$rc" != 0 ]; then
        failures+=("round $round (--parallel $level) exited $rc (run ${run:0:8}; $out)")
        tail -20 "$out" >&2
        break
    fi
    rr prune "$run" >/dev/null
done

# ---------------------------------------------------------------------------------------------
# The killed rebuild: instances in their downtime window (stop begun, start not succeeded), from
# the journal of the run.
in_downtime() {
    rr --json show "$1" 2>/dev/null | jq -r '.instances[]
        | select(any(.steps[]; .name == "stop") and (any(.steps[]; .name == "start" and .status == "Succeeded") | not))
        | .name'
}
# Websites not RUNNING under their name (stopped, or missing between retire and swap).
down_sites() {
    local running
    running=$(lxc list -c ns -f csv | awk -F, '$2 == "RUNNING" {print $1}')
    for s in "${sites[@]}"; do grep -qx "$s" <<<"$running" || echo "$s"; done
}

kill_report=()
kr() { kill_report+=("$(printf '%-36s %s' "$1" "$2")"); }
if [ ${#failures[@]} = 0 ]; then
    to=$(target_of_round "$rounds")
    echo "==> round $rounds: rebuild onto $to ($(image_of "$to")), --parallel $KILL_PARALLEL, SIGKILLed inside the downtime window"
    out="$logs/kill.out"
    : >"$out"
    "$reroot" --journal "$journal" rebuild --parallel "$KILL_PARALLEL" --max-down "$MAX_DOWN" \
        --stop-timeout "$STOP_TIMEOUT" -P "template=$to" "${site_cfgs[@]}" >"$out" 2>&1 &
    pid=$!
    # Never leave it running behind this script.
    trap 'kill -9 "$pid" 2>/dev/null || true' EXIT
    delay_ms=$((RANDOM % (KILL_JITTER_MS + 1)))
    run=""
    # Returns once a website of the run is inside its downtime window (or the rebuild ended, or
    # 120 s passed).
    wait_window() {
        local end=$((SECONDS + 120))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
            [ -n "$run" ] || run=$(run_of "$out")
            if [ -n "$run" ] && [ -n "$(in_downtime "$run" || true)" ]; then return 0; fi
            sleep 0.05
        done
    }
    # The first website begins stopping, the random delay passes, and the kill comes as soon as
    # a website is inside its window again (at once, unless the delay fell between two waves).
    wait_window
    first_ms=$(date +%s%3N)
    sleep "$(awk -v d="$delay_ms" 'BEGIN { printf "%.3f", d / 1000 }')"
    wait_window
    kill_ms=$(($(date +%s%3N) - first_ms))
    if kill -9 "$pid" 2>/dev/null; then
        killed=yes
    else
        killed="no (the rebuild had already ended)"
    fi
    wait "$pid" 2>/dev/null || true
    trap - EXIT
    down_after_kill=$(down_sites)
    n_down=$(echo "$down_after_kill" | grep -c . || true)
    journal_window=$(in_downtime "$run" | grep -c . || true)
    echo "    killed: $killed, ${kill_ms} ms after the first stop (random delay ${delay_ms} ms); down right after: $n_down"
    rc=0
    rwall=- rrss=0
    : >"$logs/resume.out"
    if [ "$killed" = yes ]; then
        echo "==> one reroot resume ${run:0:8}"
        /usr/bin/time -f '%e %M' -o "$logs/resume.time" "$reroot" --journal "$journal" resume "$run" \
            >"$logs/resume.out" 2>&1 || rc=$?
        read -r rwall rrss < <(tail -1 "$logs/resume.time")
    fi
    down_after_resume=$(down_sites)
    echo "    resume: exit $rc, ${rwall} s"
    kr "run:" "${run:0:8} (--parallel $KILL_PARALLEL, onto $to, $(image_of "$to"))"
    kr "SIGKILL:" "$killed, ${kill_ms} ms after the first website began stopping (random delay ${delay_ms} ms)"
    kr "in the downtime window at the kill:" "$journal_window (journal: stop begun, start not done)"
    kr "websites down right after the kill:" "$n_down${down_after_kill:+ ($(words <<<"$down_after_kill"))}"
    if [ "$killed" = yes ]; then
        kr "resume:" "exit $rc, ${rwall} s, peak RSS $((rrss / 1024)) MiB"
    else
        kr "resume:" "not run (nothing was killed)"
    fi
    kr "websites down after the resume:" "$(echo "$down_after_resume" | grep -c . || true)${down_after_resume:+ ($(words <<<"$down_after_resume"))}"
    if [ "$killed" != yes ]; then
        failures+=("the killed rebuild had ended before the SIGKILL: nothing was tested")
    fi
    if [ "$rc" != 0 ]; then
        failures+=("reroot resume ${run:0:8} exited $rc ($logs/resume.out)")
        tail -20 "$logs/resume.out" >&2
    fi
    [ -z "$down_after_resume" ] || failures+=("down after the resume: $(words <<<"$down_after_resume")")
    downs=$(downtimes "$run" || true)
    kr "warnings logged:" "$(warnings "$out") by the killed rebuild, $(warnings "$logs/resume.out") by the resume"
    kr "slowest website:" "$(slowest "$run" || true)"
    kr "downtime over kill + resume:" "p50 $(pct 50 <<<"$downs" | ms) s, p95 $(pct 95 <<<"$downs" | ms) s, max $(pct 100 <<<"$downs" | ms) s ($(echo "$downs" | grep -c . || true) recorded)"
fi

# ---------------------------------------------------------------------------------------------
echo "==> checking every website"
bad=0
check_rows=()
for s in "${sites[@]}"; do
    status=$(lxc list "^$s\$" -c s -f csv)
    version=$(lxc exec "$s" -- cat /etc/template-version 2>/dev/null || echo '?')
    now=$(site_sum "$s" 2>/dev/null || echo missing)
    data=$([ "$now" = "${sums[$s]}" ] && echo identical || echo CHANGED)
    stale=$(lxc exec "$s" -- sh -c 'test -e /root/only-in-old-root && echo present || echo gone' 2>/dev/null || echo '?')
    if [ "$status" = RUNNING ] && [ "$version" = new ] && [ "$data" = identical ] && [ "$stale" = gone ]; then
        ok=ok
    else
        ok=FAILED
        bad=$((bad + 1))
    fi
    check_rows+=("$(printf '%-12s %-9s %-9s %-10s %-14s %s' "$s" "${status:-MISSING}" "$version" "$data" "$stale" "$ok")")
done
[ "$bad" = 0 ] || failures+=("$bad of $count websites failed the final check")

# ---------------------------------------------------------------------------------------------
echo
echo "=== scale: $count websites, data on plain directories, --stop-timeout $STOP_TIMEOUT (launch: ${launch_s} s)"
printf '%-6s %-9s %-11s %4s %8s %9s %8s %8s %8s %6s %5s\n' ROUND PARALLEL TEMPLATE EXIT WALL-S RSS-MIB \
    P50-S P95-S MAX-S DOWNS WARNS
if [ ${#rows[@]} -gt 0 ]; then
    printf '%s\n' "${rows[@]}"
    echo "slowest website of each round (its downtime, then its steps from stop to start):"
    printf '  %s\n' "${slow[@]}"
else
    echo "(no timed rounds: LEVELS is empty)"
fi
echo
echo "=== kill -9 inside the downtime window, then one resume"
if [ ${#kill_report[@]} -gt 0 ]; then printf '%s\n' "${kill_report[@]}"; else echo "(not run: an earlier round failed)"; fi
echo
echo "=== final check (running, template new, data identical, old root's file gone)"
printf '%-12s %-9s %-9s %-10s %-14s %s\n' INSTANCE STATUS TEMPLATE DATA OLD-ROOT-FILE CHECK
if [ "$count" -le 50 ]; then
    printf '%s\n' "${check_rows[@]}"
else
    # Only the failures (none is no error: grep's exit 1 must not end the script).
    printf '%s\n' "${check_rows[@]}" | { grep 'FAILED$' || true; } | head -50
fi
echo "$((count - bad)) of $count websites ok"
echo

if [ "$KEEP" = 1 ]; then
    echo "==> KEEP=1: keeping the instances $PREFIX-*, their profiles and $SCRATCH (journal: $journal)"
else
    echo "==> cleaning up"
    cleanup
fi

if [ ${#failures[@]} = 0 ]; then
    echo "scale: OK"
else
    echo "scale: FAILED:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    [ "$KEEP" = 1 ] || echo "  (the logs and the journal are gone with $SCRATCH: KEEP=1 keeps them)" >&2
    exit 1
fi
