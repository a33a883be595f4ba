#!/usr/bin/env bash
# Side-by-side benchmarks: dlenv vs the docker CLI doing the same work, in one run on one
# machine. Prints a Markdown table for BENCHMARKS.md. Needs a running engine and a
# release build (`cargo build --release`). Usage: bench/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}
DLENV=$(realpath "${DLENV:-./target/release/dlenv}")
[ -x "$DLENV" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# median wall time in ms of ROUNDS runs of a command (alternating runs are not needed:
# each pair below runs back to back in the same minute)
median_ms() {
  local times=() t0 t1
  for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f", m/1000}'
}

row() { # name, dlenv cmd, docker cmd (as strings)
  local name=$1 a b
  a=$(median_ms bash -c "$2"); b=$(median_ms bash -c "$3")
  printf '| %s | `%s` | %s ms | `%s` | %s ms | %s |\n' "$name" "$2" "$a" "$3" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}')"
}

echo "Machine: $(nproc) cores, $(docker version --format 'engine {{.Server.Version}} API {{.Server.APIVersion}}'), ${ROUNDS} rounds, median"
echo
echo '| what | dlenv | time | docker CLI | time | ratio dlenv/docker |'
echo '|---|---|---|---|---|---|'
row "engine facts" "$DLENV engine info --json" "docker info --format '{{json .}}'"
if docker image inspect dlenv-test/busybox:latest >/dev/null 2>&1; then
  row "run a container (start to exit)" "$DLENV run -q --no-workspace --gpus none --image dlenv-test/busybox:latest -- true" "docker run --rm dlenv-test/busybox:latest true"
fi
if docker image inspect dlenv/base:debian-bookworm >/dev/null 2>&1; then
  row "cached base image (reuse)" "$DLENV base bootstrap --json" "docker image inspect dlenv/base:debian-bookworm"
fi

echo
echo '| resolver query (whole process, no engine) | median |'
echo '|---|---|'
for q in "matrix --json --gpu H100 --driver 550.54.15" \
         "matrix --json --gpu 'RTX 5090' --gpu A100 --gpu T4 --driver 570.124.06" \
         "resolve --json --gpu H100 --driver 550.54.15 --framework pytorch" \
         "resolve --json --gpu 'RTX 5090' --driver 535.104.05 --framework pytorch==2.7.0"; do
  printf '| `dlenv %s` | %s ms |\n' "$q" "$(median_ms bash -c "$DLENV $q")"
done

# Cold build vs a rebuild after changing one pip package (one round each: builds are slow).
if docker image inspect dlenv/base:debian-bookworm >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"; docker rmi -f $(docker images -q dlenv/benchbuild) >/dev/null 2>&1 || true' EXIT
  spec() { printf '[env]\nname = "benchbuild"\nframework = "none"\nbase = "dlenv/base:debian-bookworm"\npip = ["%s"]\n' "$1" > "$work/dlenv.toml"; }
  secs() { (cd "$work" && "$DLENV" build --json "$@" 2>/dev/null) | sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p'; }
  spec "six==1.16.0"; cold=$(secs --no-cache)
  spec "six==1.17.0"; warm=$(secs)
  echo
  echo '| build (Debian base, python3 + venv + one pip package) | time |'
  echo '|---|---|'
  printf '| cold: `dlenv build --no-cache` | %.1f s |\n' "$cold"
  printf '| rebuild after changing the pip package | %.1f s (%.2fx the cold build) |\n' "$warm" "$(awk -v a="$warm" -v b="$cold" 'BEGIN {print a/b}')"
fi
