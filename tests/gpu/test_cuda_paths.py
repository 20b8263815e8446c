"""CUDA checks beyond the Triton LIF kernels: DelayedLinear, one trainer step of every method, the
SHD delays recipe end to end and data-parallel training, each against the CPU result.

All are marked ``gpu`` and skip without CUDA (CI has none); ``bash bench/gpu_check.sh`` runs them with
the GPU benchmark on a CUDA machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

METHODS = ("bptt", "sltt", "sltt_k", "forward_forward", "mono_forward")


def _strategy(name: str):
    from spike.train.forward_forward import ForwardForward, MonoForward
    from spike.train.sltt import SLTT
    from spike.train.strategy import BPTT

    return {"bptt": BPTT(), "sltt": SLTT(chunk=3), "sltt_k": SLTT(k=3),
            "forward_forward": ForwardForward(theta=0.2, label_scale=4.0), "mono_forward": MonoForward()}[name]


def test_delayed_linear_matches_cpu_forward_and_backward():
    from spike.synapses.delays import DelayedLinear

    torch.manual_seed(0)
    cpu = DelayedLinear(40, 24, max_delay=9).double()
    gpu = DelayedLinear(40, 24, max_delay=9).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = (torch.rand(30, 5, 40, dtype=torch.float64) < 0.2).double()
    out_c = cpu(x)
    out_g = gpu(x.cuda())
    out_c = out_c[0] if isinstance(out_c, tuple) else out_c
    out_g = out_g[0] if isinstance(out_g, tuple) else out_g
    torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-9, atol=1e-9)
    out_c.square().sum().backward()
    out_g.square().sum().backward()
    for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-7, atol=1e-9, msg=n)


@pytest.mark.parametrize("method", METHODS)
def test_one_trainer_step_of_every_method_matches_cpu(method):
    from spike.core.config import ModelConfig
    from spike.models import build_model
    from spike.train.losses import get_loss

    m = ModelConfig(kind="mlp", hidden=(32, 16), tau=4.0, dropout=0.0, readout_tau=4.0, backend="reference")
    params = {}
    for dev in ("cpu", "cuda"):
        st = _strategy(method)
        torch.manual_seed(0)
        model = (st.build_model(m, (2, 4, 4), 4) if hasattr(st, "build_model") else build_model(m, (2, 4, 4), 4))
        model = model.double().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        for _ in range(2):
            x = ((torch.rand(10, 8, 2, 4, 4, generator=g) < 0.3).double() * 2.0).to(dev)
            y = torch.randint(0, 4, (8,), generator=g).to(dev)
            st.train_step(model, x, y, get_loss("per_step"), opt, 0.5)
        params[dev] = [p.detach().cpu() for p in model.parameters()]
    for p, q in zip(params["cpu"], params["cuda"]):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-8)


def test_shd_delays_recipe_one_epoch_on_cuda(tmp_path, capsys):
    from datasets.fixtures import write_shd
    from spike.cli.main import main

    write_shd(tmp_path, n_train=16, n_test=8)
    out = tmp_path / "run"
    assert main(["train", str(ROOT / "configs" / "shd_delays.toml"), "--device", "cuda", "--out", str(out),
                 "--set", f'data.root="{tmp_path}"', "train.epochs=1", "data.batch_size=8",
                 "data.val_fraction=0.0", "run.plots=false"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["device"].startswith("cuda") and m["epochs"] == 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP on CUDA needs two GPUs")
def test_two_nccl_processes_match_one_process(tmp_path):
    from tests.train.test_distributed import WORKER

    script = tmp_path / "worker.py"
    script.write_text(WORKER.replace('torch.device("cpu")', 'torch.device("cuda", int(__import__("os").environ.get("LOCAL_RANK", 0)))')
                      .replace("model.double()", "model.double().to(info.device if info else 'cuda')")
                      .replace(").double() * 2.0", ").double().to('cuda') * 2.0")
                      .replace("y = torch.randint(0, 4, (8,), generator=g)", "y = torch.randint(0, 4, (8,), generator=g).cuda()"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    single, multi = tmp_path / "single.pt", tmp_path / "multi.pt"
    methods = ",".join(METHODS)
    r = subprocess.run([sys.executable, str(script), str(single), methods], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(multi), methods], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(single), torch.load(multi)
    for name in METHODS:
        for p, q in zip(a[name], b[name]):
            assert torch.allclose(p.cpu(), q.cpu(), atol=1e-5, rtol=0), name
