#!/usr/bin/env bash
# The main job, on a fresh machine (as root): set up the testbed, build reroot, launch N demo
# websites (default 6) from a template with their data on ZFS and btrfs, write data into them,
# build a new template, rebuild every website onto it in parallel, and show that each one runs
# the new template with its data byte-identical, and how long each was down.
#
# Safe to run again: it rebuilds whatever the previous run left. Usage: scripts/demo.sh [N]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
count=${1:-6}
[[ "$count" =~ ^[0-9]+$ && "$count" -ge 1 ]] || { echo "usage: $0 [NUMBER-OF-WEBSITES]" >&2; exit 2; }

bash scripts/testbed.sh

echo "==> building reroot (release)"
cargo build --release --quiet
reroot="$repo/target/release/reroot"
export REROOT_JOURNAL=${REROOT_JOURNAL:-/var/lib/reroot/demo/journal}
demo=/var/lib/reroot/demo
mkdir -p "$demo"
stamp=$(date -u +%Y%m%d%H%M%S)
runs=()

last_run() { "$reroot" history --limit 1 --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1; }

echo "==> template on the old image (reroot-old), snapshot old-$stamp"
"$reroot" rebuild --stop-timeout 0 -P template-image=reroot-old configs/template.yaml
runs+=("$(last_run)")
"$reroot" snapshot --root-only -s "old-$stamp" configs/template.yaml

echo "==> $count websites from template/old-$stamp (launched, or rebuilt if they exist)"
sites=()
for i in $(seq 1 "$count"); do
    f="$demo/demo-$i.yaml"
    printf '#lxdops\ndescription: demo website %s\ninclude:\n  - %s/configs/web/site-a.yaml\n' \
        "$i" "$repo" >"$f"
    sites+=("$f")
done
"$reroot" rebuild --parallel 4 --stop-timeout 0 -P "template-snapshot=old-$stamp" "${sites[@]}"
runs+=("$(last_run)")

echo "==> writing data into each website (from inside the container)"
declare -A sums
for i in $(seq 1 "$count"); do
    name="demo-$i"
    lxc exec "$name" -- sh -c "echo 'orders of $name, written $stamp' > /var/www/orders.txt; \
        dd if=/dev/urandom of=/var/www/blob.bin bs=1k count=256 2>/dev/null; \
        echo 'log of $name' >> /var/log/site/app.log; touch /root/only-in-old-root"
    www=$(zfs get -H -o value mountpoint "rerootz/reroot/$name")/www
    sums[$name]=$(cat "$www/orders.txt" "$www/blob.bin" "/srv/reroot-btrfs/$name/app.log" | sha256sum | cut -d' ' -f1)
done

echo "==> new template from reroot-new, snapshot new-$stamp"
"$reroot" rebuild --stop-timeout 0 -P template-image=reroot-new configs/template.yaml
runs+=("$(last_run)")
"$reroot" snapshot --root-only -s "new-$stamp" configs/template.yaml

echo "==> bulk rebuild of $count websites onto template/new-$stamp (4 at a time, the first one alone as a canary)"
"$reroot" rebuild --parallel 4 --canaries 1 -P "template-snapshot=new-$stamp" "${sites[@]}"
bulk=$(last_run)

echo "==> checking every website"
failed=0
printf '%-10s %-10s %-10s %-14s %s\n' INSTANCE STATUS TEMPLATE DATA OLD-ROOT-FILE
for i in $(seq 1 "$count"); do
    name="demo-$i"
    status=$(lxc list "^$name\$" -c s -f csv)
    version=$(lxc exec "$name" -- cat /etc/template-version)
    www=$(zfs get -H -o value mountpoint "rerootz/reroot/$name")/www
    now=$(cat "$www/orders.txt" "$www/blob.bin" "/srv/reroot-btrfs/$name/app.log" | sha256sum | cut -d' ' -f1)
    data=$([ "$now" = "${sums[$name]}" ] && echo identical || echo CHANGED)
    stale=$(lxc exec "$name" -- sh -c 'test -e /root/only-in-old-root && echo present || echo gone')
    printf '%-10s %-10s %-10s %-14s %s\n' "$name" "$status" "$version" "$data" "$stale"
    [ "$status" = RUNNING ] && [ "$version" = new ] && [ "$data" = identical ] && [ "$stale" = gone ] || failed=1
done
echo
"$reroot" show "$bulk"

echo "==> pruning the retired roots of the earlier runs of this demo"
for r in "${runs[@]}"; do "$reroot" prune "$r" >/dev/null; done
echo "The bulk run keeps its retired roots: 'reroot undo $bulk' puts every website back;"
echo "'reroot prune $bulk' deletes them."
if [ "$failed" = 0 ]; then
    echo "demo: OK: $count websites rebuilt onto the new template, data identical"
else
    echo "demo: FAILED: see the table above" >&2
    exit 1
fi
