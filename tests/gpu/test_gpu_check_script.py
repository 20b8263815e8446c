"""``bench/gpu_check.sh`` runs on a CPU too: every gpu test skips, the benchmark is left out, and the
JSON summary says so (on a CUDA machine the same command runs everything)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the script runs the real checks (minutes)")
def test_gpu_check_script_skips_cleanly_on_cpu(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["bench"] == "gpu_check" and s["cuda"] is False and s["ok"] is True
    assert s["tests"].get("skipped", 0) >= 10 and s["tests"].get("failed", 0) == 0 and s["gpu_bench"] is None
