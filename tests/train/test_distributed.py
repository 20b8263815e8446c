"""Data-parallel training under torchrun: 2 gloo processes on CPU give the parameters of one process
on the same global batch (every strategy), and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("bptt", "sltt", "sltt_k", "forward_forward", "mono_forward")

# One script, run either by torchrun (2 processes, each on its slice rank::2 of every global batch)
# or directly (1 process, the whole batch). It trains each method for a few steps from the same
# seed and rank 0 saves the parameters.
WORKER = textwrap.dedent('''
    import sys, torch
    from spike.core.config import ModelConfig
    from spike.models import build_model
    from spike.train import distributed
    from spike.train.forward_forward import ForwardForward, MonoForward
    from spike.train.losses import get_loss
    from spike.train.sltt import SLTT
    from spike.train.strategy import BPTT

    out, methods = sys.argv[1], sys.argv[2].split(",")
    torch.set_num_threads(1)
    info = distributed.setup(torch.device("cpu"))
    rank, world = distributed.rank_world()
    m = ModelConfig(kind="mlp", hidden=(12, 10), tau=4.0, dropout=0.0, readout_tau=4.0)
    strategies = {"bptt": BPTT(), "sltt": SLTT(chunk=3), "sltt_k": SLTT(k=3),
                  "forward_forward": ForwardForward(theta=0.2, label_scale=4.0), "mono_forward": MonoForward()}
    result = {}
    for name in methods:
        st = strategies[name]
        torch.manual_seed(0)
        model = (st.build_model(m, (2, 3, 3), 4) if hasattr(st, "build_model") else build_model(m, (2, 3, 3), 4))
        model = distributed.wrap(model.double(), info)
        result[name + "/init"] = [p.detach().clone() for p in distributed.unwrap(model).parameters()]
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        loss_fn = get_loss("per_step")
        g = torch.Generator().manual_seed(1)
        for step in range(4):
            x = (torch.rand(9, 8, 2, 3, 3, generator=g) < 0.3).double() * 2.0  # global batch of 8
            y = torch.randint(0, 4, (8,), generator=g)
            st.train_step(model, x[:, rank::world], y[rank::world], loss_fn, opt, 0.5)
        result[name] = [p.detach().clone() for p in distributed.unwrap(model).parameters()]
    if distributed.is_main():
        torch.save(result, out)
    distributed.teardown()
''')


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["NUMBA_NUM_THREADS"] = "1"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_two_gloo_processes_match_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    methods = ",".join(METHODS)
    single, multi = tmp_path / "single.pt", tmp_path / "multi.pt"
    r = subprocess.run([sys.executable, str(script), str(single), methods], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(multi), methods], env=_env(), capture_output=True, text=True, timeout=300)
    root = r.stderr.find("Traceback")  # the child's own error, not torchrun's trailing warnings
    if r.returncode != 0:  # pytest shortens long assertion messages: the whole tail goes to the captured output
        print(r.stdout[-4000:], r.stderr[-12000:], sep="\n")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[max(root, 0):max(root, 0) + 4000])
    a, b = torch.load(single), torch.load(multi)
    for name in METHODS:
        assert len(a[name]) == len(b[name])
        for p, q in zip(a[name], b[name]):
            assert p.shape == q.shape
            assert torch.allclose(p, q, atol=1e-5, rtol=0), (name, float((p - q).abs().max()))
        moved = max(float((p - p0).abs().max()) for p, p0 in zip(a[name], a[name + "/init"]))
        assert moved > 1e-3, name  # it trained: the comparison is not between two untouched inits


def test_setup_is_a_no_op_without_torchrun(monkeypatch):
    from spike.train import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup(torch.device("cpu")) is None
    assert distributed.rank_world() == (0, 1) and distributed.is_main()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, None) is model and distributed.unwrap(model) is model
    model(torch.ones(1, 2)).sum().backward()
    g = model.weight.grad.clone()
    distributed.sync_gradients(model)  # single process: unchanged
    assert torch.equal(g, model.weight.grad)


def test_setup_errors_are_clear(monkeypatch):
    from spike.train import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        distributed.setup(torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        distributed.setup(torch.device("cpu"))
    with pytest.raises(ValueError, match="batch_size = 10 .* multiple of the number of processes \\(4\\)"):
        distributed.local_batch_size(10, 4)
    assert distributed.local_batch_size(12, 4) == 3


@pytest.mark.slow
def test_spike_train_under_torchrun_only_rank0_writes(tmp_path):
    """The CLI itself under torchrun: trains, rank 0 alone writes the run folder."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(textwrap.dedent('''
        [run]
        name = "ddp"
        plots = false
        progress = false
        device = "cpu"
        [data]
        name = "digits"
        n_time_bins = 8
        batch_size = 64
        [model]
        hidden = [32]
        [train]
        method = "sltt"
        loss = "per_step"
        sltt_chunk = 4
        epochs = 1
    '''))
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "spike.cli.main", "train", str(cfg), "--out", str(out)], env=_env(),
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2 and all(m["world_size"] == 2 for m in lines)
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.csv", "metrics.json"]
    from spike.train.recipe import evaluate_checkpoint

    assert evaluate_checkpoint(out / "last.pt")["test_accuracy"] > 0.3
