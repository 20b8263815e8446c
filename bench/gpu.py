"""GPU benchmark: fused Triton LIF vs the fastest peers, all in one run on one GPU.

(a) LIF alone, T=500, B=16, N in {4096, 8192, 16384}: forward and forward+backward time, achieved
    GB/s and ratio to the memory-bandwidth floor. The floor is the bytes a pass must move divided by
    the bandwidth of a device-to-device copy measured in the same run:
      forward (inference)  : read x, write spikes                       = 2 * T*B*N * 4 B
      forward (training)   : read x, write spikes and h (for backward)  = 3 * T*B*N * 4 B
      backward             : read grad_spikes and h, write grad_x       = 3 * T*B*N * 4 B
(b) The Open Neuromorphic benchmark workload: Linear(N, N) + LIF, T=500, B=16, forward+backward,
    time and peak memory (``torch.cuda.max_memory_allocated``).
Peers: SpikingJelly ``LIFNode(step_mode="m")`` (its CUDA implementation is chosen automatically by
SpikingJelly 2.x: CuPy/Triton), snnTorch ``Leaky`` (loop over time). Time by CUDA events, median of reps.

    python bench/gpu.py            # prints a table; last line is one JSON object
"""

from __future__ import annotations

import json
import statistics
import sys

import torch

T, B = 500, 16
SIZES = (4096, 8192, 16384)
TAU, DT = 2.0, 1.0  # SpikingJelly tau=2 (euler): beta = 0.5


def cuda_time(fn, reps=10, warmup=3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth (bytes/s): read + write of a 1 GiB buffer."""
    x = torch.empty(2**28, device="cuda")
    y = torch.empty_like(x)
    t = cuda_time(lambda: y.copy_(x), reps=20)
    return 2 * x.numel() * 4 / t


def ours_lif():
    from spike.neurons import LIF

    return LIF(tau=TAU, dt=DT, discretization="euler", decay_input=True, backend="triton").cuda()


def peers_lif():
    peers = {}
    try:
        from spikingjelly.activation_based import neuron

        peers["spikingjelly"] = lambda: neuron.LIFNode(tau=TAU, step_mode="m", v_reset=None).cuda()
    except Exception as e:  # noqa: BLE001
        print(f"spikingjelly unavailable: {type(e).__name__}: {e}")
    try:
        import snntorch as snn

        def make():
            lk = snn.Leaky(beta=0.5, reset_mechanism="subtract").cuda()

            class Loop(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lk = lk

                def forward(self, x):
                    mem = torch.zeros_like(x[0])
                    out = []
                    for xt in x.unbind(0):
                        s, mem = self.lk(xt, mem)
                        out.append(s)
                    return torch.stack(out)

            return Loop()

        peers["snntorch"] = make
    except Exception as e:  # noqa: BLE001
        print(f"snntorch unavailable: {type(e).__name__}: {e}")
    return peers


def _spikes(out):
    return out if isinstance(out, torch.Tensor) else out[0]


def reset_if_needed(m):
    try:
        from spikingjelly.activation_based import functional

        functional.reset_net(m)
    except Exception:  # noqa: BLE001
        pass


def bench_lif(bw: float) -> list[dict]:
    rows = []
    for n in SIZES:
        x = torch.rand(T, B, n, device="cuda") * 1.5
        g = torch.rand(T, B, n, device="cuda")
        elems = T * B * n
        makers = {"spike": ours_lif, **peers_lif()}
        for name, make in makers.items():
            m = make()
            xg = x.clone().requires_grad_()

            def fwd():
                reset_if_needed(m)
                with torch.no_grad():
                    _spikes(m(x))

            def fwd_bwd():
                reset_if_needed(m)
                xg.grad = None
                _spikes(m(xg)).backward(g)

            t_f = cuda_time(fwd)
            t_fb = cuda_time(fwd_bwd)
            floor_f = 2 * elems * 4 / bw
            floor_fb = 6 * elems * 4 / bw
            rows.append({"N": n, "impl": name, "fwd_s": t_f, "fwd_bwd_s": t_fb,
                         "fwd_GBps": 2 * elems * 4 / t_f / 1e9, "fwd_bwd_GBps": 6 * elems * 4 / t_fb / 1e9,
                         "fwd_vs_floor": t_f / floor_f, "fwd_bwd_vs_floor": t_fb / floor_fb})
            del m
            torch.cuda.empty_cache()
    return rows


def bench_workload() -> list[dict]:
    rows = []
    for n in SIZES:
        x = torch.rand(T, B, n, device="cuda")
        makers = {"spike": ours_lif, **peers_lif()}
        for name, make in makers.items():
            lin = torch.nn.Linear(n, n).cuda()
            lif = make()

            def step():
                reset_if_needed(lif)
                lin.zero_grad(set_to_none=True)
                y = lin(x)  # [T, B, N]
                _spikes(lif(y)).sum().backward()

            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            t = cuda_time(step, reps=5, warmup=1)
            peak = torch.cuda.max_memory_allocated() - base
            rows.append({"N": n, "impl": name, "time_s": t, "peak_mem_GB": peak / 1e9})
            del lin, lif
            torch.cuda.empty_cache()
    return rows


def main() -> int:
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU; none found (nothing measured)")
        print(json.dumps({"bench": "gpu", "status": "skipped: no CUDA device"}))
        return 0
    name = torch.cuda.get_device_name(0)
    bw = copy_bandwidth()
    print(f"GPU: {name}; device-to-device copy bandwidth {bw / 1e9:.0f} GB/s (the floor's bandwidth)")
    lif_rows = bench_lif(bw)
    print(f"\n(a) LIF alone, T={T}, B={B}")
    print(f"{'N':>6} {'impl':>13} {'fwd ms':>8} {'fwd+bwd ms':>11} {'GB/s f':>7} {'GB/s fb':>8} {'x floor f':>9} "
          f"{'x floor fb':>10}")
    for r in lif_rows:
        print(f"{r['N']:>6} {r['impl']:>13} {r['fwd_s'] * 1e3:8.2f} {r['fwd_bwd_s'] * 1e3:11.2f} {r['fwd_GBps']:7.0f} "
              f"{r['fwd_bwd_GBps']:8.0f} {r['fwd_vs_floor']:9.2f} {r['fwd_bwd_vs_floor']:10.2f}")
    wl_rows = bench_workload()
    print(f"\n(b) Linear(N,N) + LIF, T={T}, B={B}, forward+backward")
    print(f"{'N':>6} {'impl':>13} {'time s':>8} {'peak GB':>8}")
    for r in wl_rows:
        print(f"{r['N']:>6} {r['impl']:>13} {r['time_s']:8.4f} {r['peak_mem_GB']:8.3f}")

    def get(rows, n, impl, key):
        for r in rows:
            if r["N"] == n and r["impl"] == impl:
                return r[key]
        return None

    n = max(SIZES)
    sj_t = get(wl_rows, n, "spikingjelly", "time_s")
    sj_m = get(wl_rows, n, "spikingjelly", "peak_mem_GB")
    summary = {
        "bench": "gpu", "gpu": name,
        "lif_fwd_bwd_vs_floor_16k": get(lif_rows, n, "spike", "fwd_bwd_vs_floor"),
        "lif_fwd_vs_floor_16k": get(lif_rows, n, "spike", "fwd_vs_floor"),
        "workload_time_ratio_vs_spikingjelly_16k": (get(wl_rows, n, "spike", "time_s") / sj_t) if sj_t else None,
        "workload_mem_ratio_vs_spikingjelly_16k": (get(wl_rows, n, "spike", "peak_mem_GB") / sj_m) if sj_m else None,
        "workload_time_s_16k": get(wl_rows, n, "spike", "time_s"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
