#!/usr/bin/env bash
# Export/import side by side with the docker CLI, one round each, on one image (>= 300 MB).
# Usage: bench/share.sh IMAGE   (needs a release build and a running engine; uses ~3x the
# image size in a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:?image}
DLENV=$(realpath "${DLENV:-./target/release/dlenv}")
W=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$W"' EXIT
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); awk -v d=$(( (e - s) / 1000000 )) 'BEGIN {printf "%.1f", d/1000}'; }
sz() { stat -c %s "$1" | awk '{printf "%.0f", $1/1048576}'; }
id=$(docker image inspect --format '{{.Id}}' "$IMG")
size=$(docker image inspect --format '{{.Size}}' "$IMG" | awk '{printf "%.0f", $1/1048576}')

raw=$(t sh -c "docker save '$IMG' > '$W/raw.tar'")
gz=$(t sh -c "docker save '$IMG' | gzip -6 > '$W/img.tar.gz'")
zs=$(t sh -c "docker save '$IMG' | zstd -q -T0 -3 > '$W/img.tar.zst'")
full=$(t "$DLENV" export "$IMG" --full -o "$W/full.dlenv")

load_raw() { docker rmi -f "$id" >/dev/null 2>&1; t docker load -i "$W/raw.tar"; }
lr=$(load_raw)
docker rmi -f "$id" >/dev/null 2>&1; lg=$(t sh -c "gunzip -c '$W/img.tar.gz' | docker load")
docker rmi -f "$id" >/dev/null 2>&1; ld=$(t "$DLENV" import "$W/full.dlenv")
docker image inspect "$IMG" >/dev/null

echo "Image: $IMG ($size MiB), $(nproc) cores, $(docker version --format 'engine {{.Server.Version}}'); one round each."
echo
echo '| export | time | size | ratio to `dlenv export --full` |'
echo '|---|---|---|---|'
printf '| `dlenv export --full` (zstd -3, %s threads) | %s s | %s MiB | 1 |\n' "$(nproc)" "$full" "$(sz "$W/full.dlenv")"
printf '| `docker save > file` | %s s | %s MiB | time %.2fx |\n' "$raw" "$(sz "$W/raw.tar")" "$(awk -v a="$full" -v b="$raw" 'BEGIN {print a/b}')"
printf '| `docker save \\| gzip -6` | %s s | %s MiB | time %.2fx |\n' "$gz" "$(sz "$W/img.tar.gz")" "$(awk -v a="$full" -v b="$gz" 'BEGIN {print a/b}')"
printf '| `docker save \\| zstd -T0 -3` | %s s | %s MiB | time %.2fx |\n' "$zs" "$(sz "$W/img.tar.zst")" "$(awk -v a="$full" -v b="$zs" 'BEGIN {print a/b}')"
echo
echo '| import | time | ratio dlenv/other |'
echo '|---|---|---|'
printf '| `dlenv import full.dlenv` (verify, then stream) | %s s | 1 |\n' "$ld"
printf '| `docker load -i raw.tar` | %s s | %.2fx |\n' "$lr" "$(awk -v a="$ld" -v b="$lr" 'BEGIN {print a/b}')"
printf '| `gunzip -c img.tar.gz \\| docker load` | %s s | %.2fx |\n' "$lg" "$(awk -v a="$ld" -v b="$lg" 'BEGIN {print a/b}')"
