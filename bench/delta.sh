#!/usr/bin/env bash
# Delta bundles side by side, one round each: the delta's size against the non-base
# layers compressed on their own (zstd -3), and importing the delta onto a host that has
# the base against importing the full bundle.
# Usage: bench/delta.sh IMAGE BASE   (release build, running engine, python3, zstd)
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:?image}
BASE=${2:?base image}
DLENV=$(realpath "${DLENV:-./target/release/dlenv}")
W=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$W"' EXIT
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); awk -v d=$(( (e - s) / 1000000 )) 'BEGIN {printf "%.1f", d/1000}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }
id=$(docker image inspect --format '{{.Id}}' "$IMG")
nbase=$(docker image inspect --format '{{len .RootFS.Layers}}' "$BASE")
nall=$(docker image inspect --format '{{len .RootFS.Layers}}' "$IMG")

td=$(t "$DLENV" export "$IMG" --delta --base "$BASE" -o "$W/delta.dlenv")
tf=$(t "$DLENV" export "$IMG" --full -o "$W/full.dlenv")
delta=$(stat -c %s "$W/delta.dlenv"); full=$(stat -c %s "$W/full.dlenv")

# The non-base layers, each compressed with zstd -3 on its own: what a delta must carry.
mkdir "$W/save"; docker save "$IMG" | tar -x -C "$W/save"
python3 - "$W/save" "$nbase" > "$W/layers" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
m = json.load(open(f"{d}/manifest.json"))[0]
for layer in m["Layers"][n:]:
    print(f"{d}/{layer}")
PY
comp=0
while read -r l; do
  s=$(zstd -q -3 -T0 -c "$l" | wc -c); comp=$((comp + s))
done < "$W/layers"

docker rmi -f "$id" >/dev/null; ti_d=$(t "$DLENV" import "$W/delta.dlenv")
docker image inspect "$IMG" >/dev/null
docker rmi -f "$id" >/dev/null; ti_f=$(t "$DLENV" import "$W/full.dlenv")
docker image inspect "$IMG" >/dev/null

echo "Image: $IMG ($nall layers) on base $BASE ($nbase layers), $(nproc) cores, $(docker version --format 'engine {{.Server.Version}}'); one round each."
echo
echo '| | delta | full | delta ÷ full |'
echo '|---|---|---|---|'
printf '| bundle size | %s MiB | %s MiB | %.2f |\n' "$(mib $delta)" "$(mib $full)" "$(awk -v a=$delta -v b=$full 'BEGIN {print a/b}')"
printf '| export time | %s s | %s s | %.2f |\n' "$td" "$tf" "$(awk -v a=$td -v b=$tf 'BEGIN {print a/b}')"
printf '| import time (base present) | %s s | %s s | %.2f |\n' "$ti_d" "$ti_f" "$(awk -v a=$ti_d -v b=$ti_f 'BEGIN {print a/b}')"
echo
printf 'Non-base layers compressed alone (zstd -3): %s MiB; the delta bundle is %.3fx that (goal <= 1.02x).\n' "$(mib $comp)" "$(awk -v a=$delta -v b=$comp 'BEGIN {print a/b}')"
