#!/usr/bin/env bash
# Bench-only peers (NOT test extras): Spyx (JAX) in its own venv, so jax/jaxlib/optax never touch the
# project environment (no second torch, `pip check` of the project venv unchanged).
# bench/lif.py finds the venv at $SPIKE_SPYX_VENV (default /tmp/spyxenv) and runs Spyx in a subprocess
# of the same run; without it the Spyx rows are skipped with a message.
# The torch peers (snnTorch, SpikingJelly, Norse) come from .ci/install_peers.sh.
# Usage:  bash bench/install_bench_peers.sh && python bench/lif.py
set -euo pipefail
VENV="${SPIKE_SPYX_VENV:-/tmp/spyxenv}"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# CPU jax only (jaxlib wheel ~80 MB); spyx pulls flax (nnx) and optax; the venv is ~790 MB
"$VENV/bin/python" -m pip install -q "jax[cpu]" spyx
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import jax, spyx, flax, optax; print('spyx', getattr(spyx, '__version__', '?'), 'jax', jax.__version__)"
du -sh "$VENV" | sed 's/^/venv size: /'
