"""Fused numba kernels of CubaLIF and SE-adLIF against their reference scans (forward + backward).

T=100, B=32, N=512, float32; reference and numba interleaved in the same run, LIF's numba kernel as
context. Ends with one JSON line (``"bench": "neurons"``)::

    python bench/neurons.py
"""
import json
import time

import torch

from spike.neurons import CubaLIF, AdLIF, LIF
T, B, N = 100, 32, 512
torch.manual_seed(0)
res = {"bench": "neurons", "T": T, "B": B, "N": N, "threads": torch.get_num_threads(), "dtype": "float32"}

def once(layer, x, gw):
    xx = x.detach().requires_grad_()
    w0, c0 = time.perf_counter(), time.process_time()
    layer(xx).spikes.backward(gw)  # upstream gradient given, so only the neuron's fwd+bwd is timed
    return time.perf_counter() - w0, time.process_time() - c0

for name, cls, kw, scale in [("lif_for_context", LIF, dict(tau=10.0), 0.5),
                             ("cubalif", CubaLIF, dict(tau=10.0, tau_syn=5.0), 0.2),
                             ("cubalif_learn_tau", CubaLIF, dict(tau=10.0, tau_syn=5.0, learn_tau=True, shape=N), 0.2),
                             ("adlif", AdLIF, dict(tau=10.0, tau_w=100.0), 3.0),
                             ("adlif_learn_all", AdLIF, dict(tau=10.0, tau_w=100.0, learn_tau=True, learn_ab=True, shape=N), 3.0)]:
    x = torch.rand(T, B, N) * scale
    gw = torch.randn(T, B, N)
    ref, fast = cls(backend="reference", **kw), cls(backend="numba", **kw)
    for m in (ref, fast):
        once(m, x, gw)  # warm-up (numba compile cache, allocator)
    t = {"ref": [], "fast": []}
    for _ in range(12):  # interleaved, so other load hits both alike
        t["ref"].append(once(ref, x, gw)); t["fast"].append(once(fast, x, gw))
    rw, fw = min(a for a, _ in t["ref"]), min(a for a, _ in t["fast"])
    rc, fc = min(b for _, b in t["ref"]), min(b for _, b in t["fast"])
    res[name] = {"reference_ms": round(1e3 * rw, 2), "numba_ms": round(1e3 * fw, 2), "speedup_wall": round(rw / fw, 2),
                 "speedup_cpu": round(rc / fc, 2), "rate": round(float(fast(x).spikes.detach().mean()), 3)}
print(json.dumps(res))
