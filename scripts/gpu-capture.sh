#!/usr/bin/env bash
# Record what a real GPU host looks like to dlenv, for test fixtures.
# Usage: scripts/gpu-capture.sh DLENV_BINARY OUT_DIR
# Everything goes under OUT_DIR; nothing on the host is changed (read-only commands, plus
# `nvidia-ctk cdi generate` writing to OUT_DIR only).
set -u
BIN=${1:?dlenv binary}
OUT=${2:?output directory}
mkdir -p "$OUT/raw"
cap() { # cap NAME CMD...: stdout, stderr and exit status of one command
  local name=$1; shift
  "$@" >"$OUT/raw/$name.out" 2>"$OUT/raw/$name.err"
  echo $? >"$OUT/raw/$name.rc"
}
cap uname uname -a
cap os-release cat /etc/os-release
cap ldd ldd --version
cap proc-driver cat /proc/driver/nvidia/version
cap dev-nvidia ls -la /dev/nvidia-caps /dev/ --ignore='[a-mo-z]*'
cap nvidia-smi nvidia-smi
cap nvidia-smi-q-x nvidia-smi -q -x
cap nvidia-smi-csv nvidia-smi --query-gpu=index,name,uuid,driver_version,compute_cap,memory.total,mig.mode.current,pci.bus_id --format=csv
cap nvidia-smi-topo nvidia-smi topo -m
cap nvidia-smi-L nvidia-smi -L
cap which sh -c 'for p in docker podman nvidia-ctk nvidia-container-cli nvidia-container-runtime python3 nvcc; do command -v $p || echo "missing: $p"; done'
cap nvidia-container-cli nvidia-container-cli info
cap nvidia-ctk-version nvidia-ctk --version
cap cdi-generate nvidia-ctk cdi generate --output="$OUT/raw/cdi-nvidia.yaml"
cap docker-info docker info
cap libs sh -c 'ls -la /usr/lib/x86_64-linux-gnu/ /usr/lib64 /usr/local/nvidia/lib64 2>/dev/null | grep -E "libcuda|libnvidia-ml|libnvidia-ptxjit"'
cap torch python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_arch_list())'
cap check-probe python3 crates/dlenv/src/commands/check/probe.py
cap dlenv-version "$BIN" --version
cap doctor "$BIN" doctor --json --record "$OUT/host"
cap doctor-human "$BIN" doctor -v
for f in "pytorch" "pytorch==2.4.1" "tensorflow" "jax" "none"; do
  cap "resolve-${f//[^a-z0-9.]/_}" "$BIN" resolve --json --framework "$f"
done
cap resolve-old-cuda "$BIN" resolve --json --framework pytorch==1.13.1
cap matrix "$BIN" matrix --json
echo "captured into $OUT"
