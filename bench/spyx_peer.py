"""Spyx (JAX) side of ``bench/lif.py``: runs in the Spyx venv (``bench/install_bench_peers.sh``), no torch.

``bench/lif.py`` starts ``<venv>/bin/python bench/spyx_peer.py`` and talks a line protocol on
stdin/stdout, so Spyx is timed in the same run, interleaved round by round with the torch
implementations. Each peer model is used the way Spyx documents it: ``spyx.nn.Sequential`` of
``flax.nnx`` layers and ``spyx.nn.LIF`` run over time by ``spyx.nn.run`` (``jax.lax.scan``), the whole
step (forward, backward, optax Adam) under one ``jax.jit``; compile time is reported, never timed.

Spyx's ``LIF``: ``s_t = H(V_{t-1} - 1)``, ``V_t = beta V_{t-1} + x_t - s_t`` (deferred subtract reset,
as snnTorch), here with ``beta = 0.9`` fixed (not trained) and the arctan surrogate ``spyx.axn.arctan()``.
``AssociativeLIF`` is reset-free (``V_t = beta V_{t-1} + x_t``): a different model, reported for
information only.
"""

from __future__ import annotations

def _spyx_worker() -> None:
    """Spyx side of the benchmark, run by the Spyx venv's python (no torch there): line protocol on stdin.

    ``{"setup": key, "kind": "lif"|"net"|"conv", ...}`` builds and jit-compiles (compile time is
    reported, not timed); ``{"time": key}`` runs one call and prints its seconds.
    """
    import json
    import time as _time

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import spyx
    from flax import nnx
    from flax import linen

    beta = 0.9
    act = spyx.axn.arctan()
    fns = {}
    weights = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("beta")))  # beta fixed, as for every peer

    def fwd_bwd(T, B, N, forward):
        """A jitted forward + vjp of ``forward`` on the shared input and output gradient."""
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((T, B, N), dtype=np.float32) * 0.6 + 0.25)
        g = jnp.asarray(rng.standard_normal((T, B, N), dtype=np.float32))

        @jax.jit
        def fb(x, g):
            s, vjp = jax.vjp(forward, x)
            return vjp(g)[0]
        return lambda: fb(x, g).block_until_ready()

    def lif_setup(T, B, N):
        lif = spyx.nn.LIF((N,), beta=beta, activation=act, rngs=nnx.Rngs(0))
        return fwd_bwd(T, B, N, lambda x: spyx.nn.run(lif, x)[0])

    def assoc_setup(T, B, N):
        lif = spyx.experimental.AssociativeLIF((N,), beta=beta, activation=act, rngs=nnx.Rngs(0))
        return fwd_bwd(T, B, N, lif.parallel)

    def train_setup(model, x, y):
        gd, params, rest = nnx.split(model, weights, ...)
        opt = optax.adam(1e-3)
        opt_state = opt.init(params)

        def loss(params, x, y):
            m = nnx.merge(gd, params, rest)
            out, _ = spyx.nn.run(m, x)  # [T, B, C]
            return optax.softmax_cross_entropy_with_integer_labels(out.mean(0), y).mean()

        @jax.jit
        def step(params, opt_state, x, y):
            g = jax.grad(loss)(params, x, y)
            upd, opt_state = opt.update(g, opt_state, params)
            return optax.apply_updates(params, upd), opt_state
        box = [params, opt_state]

        def run():
            box[0], box[1] = step(box[0], box[1], x, y)
            jax.block_until_ready(box[0])
        return run

    def net_setup(T, B, n_in, hidden, n_out, p_in):
        r = nnx.Rngs(0)
        model = spyx.nn.Sequential(nnx.Linear(n_in, hidden, rngs=r), spyx.nn.LIF((hidden,), beta=beta, activation=act, rngs=r),
                                   nnx.Linear(hidden, hidden, rngs=r), spyx.nn.LIF((hidden,), beta=beta, activation=act, rngs=r),
                                   nnx.Linear(hidden, n_out, rngs=r))
        rng = np.random.default_rng(1)
        x = jnp.asarray((rng.random((T, B, n_in)) < p_in).astype(np.float32))
        y = jnp.asarray(rng.integers(0, n_out, B))
        return train_setup(model, x, y)

    def conv_setup(T, B, C, H, W, c1, c2, n_out, p_in):
        r = nnx.Rngs(0)
        pool = lambda z: linen.avg_pool(z, (2, 2), (2, 2))  # noqa: E731
        model = spyx.nn.Sequential(
            nnx.Conv(C, c1, (3, 3), padding=1, rngs=r), spyx.nn.LIF((H, W, c1), beta=beta, activation=act, rngs=r), pool,
            nnx.Conv(c1, c2, (3, 3), padding=1, rngs=r), spyx.nn.LIF((H // 2, W // 2, c2), beta=beta, activation=act, rngs=r),
            pool, spyx.nn.Flatten(), nnx.Linear(c2 * (H // 4) * (W // 4), n_out, rngs=r))
        rng = np.random.default_rng(1)
        x = jnp.asarray((rng.random((T, B, H, W, C)) < p_in).astype(np.float32))  # NHWC, JAX's layout
        y = jnp.asarray(rng.integers(0, n_out, B))
        return train_setup(model, x, y)

    kinds = {"lif": lif_setup, "assoc": assoc_setup, "net": net_setup, "conv": conv_setup}
    print(json.dumps({"ready": True, "jax": jax.__version__, "spyx": getattr(spyx, "__version__", "?")}), flush=True)
    import sys as _sys
    for line in _sys.stdin:
        cmd = json.loads(line)
        try:
            if "setup" in cmd:
                f = kinds[cmd["kind"]](**cmd["args"])
                t0 = _time.perf_counter()
                f()  # compile + first call
                fns[cmd["setup"]] = f
                out = {"ok": True, "compile_s": _time.perf_counter() - t0}
            else:
                t0 = _time.perf_counter()
                fns[cmd["time"]]()
                out = {"ok": True, "s": _time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - reported to the parent, which skips the row
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _spyx_worker()
