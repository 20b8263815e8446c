#!/usr/bin/env bash
# Every GPU check in one command, for a CUDA machine (it also runs, and skips cleanly, on a CPU):
#   1. every `gpu`-marked test (Triton LIF kernels, DelayedLinear, a trainer step of each method,
#      the SHD delays recipe for one epoch, DDP when there are two GPUs);
#   2. bench/gpu.py (LIF alone vs the bandwidth floor; Linear+LIF vs SpikingJelly and snnTorch).
# Writes bench/out/gpu_check.json and prints it as the last line.  Usage: bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
t0=$(date +%s)
has_cuda=$(python -c "import torch; print(int(torch.cuda.is_available()))")
python -m pytest -q -m gpu tests -p no:cacheprovider > bench/out/gpu_tests.log 2>&1
tests_rc=$?
tail -3 bench/out/gpu_tests.log
bench_line='null'
bench_rc=0
if [ "$has_cuda" = "1" ]; then
  python bench/gpu.py > bench/out/gpu_bench.log 2>&1
  bench_rc=$?
  bench_line=$(tail -1 bench/out/gpu_bench.log)
  python -c "import json,sys; json.loads(sys.argv[1])" "$bench_line" 2>/dev/null || bench_line='null'
fi
python - "$has_cuda" "$tests_rc" "$bench_rc" "$bench_line" "$(( $(date +%s) - t0 ))" <<'PY'
import json, re, sys
has_cuda, tests_rc, bench_rc, bench, wall = sys.argv[1:]
log = open("bench/out/gpu_tests.log").read()
counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", log)}
import torch
summary = {"bench": "gpu_check", "cuda": has_cuda == "1",
           "device": torch.cuda.get_device_name(0) if has_cuda == "1" else None,
           "tests_rc": int(tests_rc), "tests": counts, "gpu_bench_rc": int(bench_rc),
           "gpu_bench": json.loads(bench) if bench != "null" else None, "wall_s": int(wall)}
# on a CPU every gpu test skips (rc 0); on CUDA none may fail and some must have run (DDP skips on one GPU)
ok = int(tests_rc) == 0 and int(bench_rc) == 0 and (has_cuda != "1" or counts.get("passed", 0) > 0)
summary["ok"] = bool(ok)
open("bench/out/gpu_check.json", "w").write(json.dumps(summary) + "\n")
print(json.dumps(summary))
sys.exit(0 if ok else 1)
PY
