r"""Fused CPU LIF backend (registered as ``"numba"``): one numba loop forward, one loop backward.

The input ``x: [T, B, *features]`` is viewed as ``[T, M]`` with ``M = B * prod(features)``. Both
kernels split the ``M`` neurons into chunks (spread over ``torch.get_num_threads()`` threads for
large inputs); each chunk keeps its membrane in a small local array and walks the time axis inside,
so a step costs one read of ``x_t`` and one write of ``s_t`` (plus ``h_t`` when it is kept, below).

The forward pass repeats the operations of :func:`spike.neurons.lif.lif_step` in the same order and
in ``x``'s dtype, so spikes are bit-identical to the reference:

.. math::
    \ell_t = v_\text{rest} + \beta (v_{t-1} - v_\text{rest}),\quad
    h_t = \ell_t + g x_t\ \text{(immediate)}\ \text{or}\ R(\ell_t, s_{t-1}) + g x_t\ \text{(deferred)},\quad
    s_t = H(h_t - v_\text{th})

with every reset written as :math:`R(h, s) = h (1 - a s) - b s` (subtract: :math:`a=0, b=v_\text{th}`;
to_value: :math:`a=1, b=-v_\text{reset}`; none: :math:`a=b=0`), which is exact for :math:`s \in \{0,1\}`.
Saved for backward are the input ``x`` and, for plain BPTT, the pre-reset membrane ``h`` (rows
``0..T-1`` of a ``[T+1, M]`` buffer whose rows ``1..T`` the backward reuses for ``dL/dx``: two fresh
``[T, M]`` buffers per forward + backward in all; fresh large buffers are costly, every page faults on
first touch). Under ``spike.train.memory``'s ``packed`` / ``mesa8`` hooks (:class:`private_restores`)
the output spikes are saved as bits instead (1/32 of a float32 tensor) and no membrane: the backward
kernel recomputes each neuron chunk's ``h`` (bit-identical, the resets taken from the saved spikes)
into a per-thread ``[T, chunk]`` buffer, at 2-3x the backward time, and writes ``dL/dx`` over the
restored copy of ``x``. Either way it derives the surrogate derivative :math:`\sigma'(h_t - v_\text{th})`
and the previous membrane from ``h`` and walks time in reverse (kernels:
:mod:`spike.backends._numba_lif_kernels`):

.. math::
    \bar h_t = \bar v_t \frac{\partial R}{\partial h}
        + \sigma'_t\Big(\bar s_t + \bar v_t \frac{\partial R}{\partial s}\Big),\quad
    \bar x_t = g \bar h_t,\quad \bar v_{t-1} = \beta \bar h_t,\quad
    \bar\beta \mathrel{+}= \bar h_t (v_{t-1} - v_\text{rest}),\quad \bar g \mathrel{+}= \bar h_t x_t

(immediate timing; the deferred variant moves the reset derivative to the next step and carries
:math:`\bar s_{t-1}` back through it). ``detach_reset`` drops the :math:`\partial R/\partial s` term.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
import threading

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spike.backends._pool import run_chunks
from spike.core.registry import BackendError
from spike.neurons.lif import LIFDiscrete, LIFState

try:
    import numba
    import numpy as np

    from spike.backends._numba_lif_kernels import (_bwd_chunks_bits, _bwd_chunks_h, _fwd_chunks,
                                                   _KD, _RA, _RB)
except ImportError as _e:  # pragma: no cover - exercised only without numba
    numba = None
    _NUMBA_MISSING = f"numba is not installed ({_e}); pip install numba"
else:
    _NUMBA_MISSING = None

__all__ = ["supports", "multi_step", "multi_step_spatial", "private_restores"]

_SURROGATES = {"atan": 0, "sigmoid": 1, "fast_sigmoid": 2, "triangle": 3}
_DTYPES = (torch.float32, torch.float64)
_NP_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
_CHUNK_BYTES = 16384  # contiguous bytes per time row of one work item
_PARALLEL_MIN = 1 << 20  # T * M from which the neurons are split over torch.get_num_threads() threads


_PRIVATE = threading.local()


class private_restores:  # noqa: N801 - used as a context manager, like torch's
    """Context under which every saved tensor comes back as a fresh copy, private to one backward
    (``spike.train.memory``'s ``packed``/``mesa8`` hooks pack each save separately and unpack into a
    new buffer): the backward pass may then write ``dL/dx`` over the restored ``x``."""

    def __enter__(self):
        _PRIVATE.depth = getattr(_PRIVATE, "depth", 0) + 1
        return self

    def __exit__(self, *exc):
        _PRIVATE.depth -= 1
        return False


def supports(p: LIFDiscrete, x: Tensor) -> str | None:
    """``None`` if the fused kernel runs ``p`` on ``x`` exactly like the reference, else the reason."""
    if _NUMBA_MISSING is not None:
        return _NUMBA_MISSING
    if not isinstance(x, Tensor):
        return f"input must be a torch.Tensor, got {type(x).__name__}"
    if x.device.type != "cpu":
        return f"input is on {x.device.type}, the numba backend runs on CPU only"
    if x.dtype not in _DTYPES:
        return f"dtype {x.dtype} is not supported (float32 or float64)"
    if x.dim() < 2 or x.shape[0] == 0:
        return f"input must be [T, B, ...] with T >= 1, got shape {tuple(x.shape)}"
    if p.w_rec is not None:
        return "recurrent weights (w_rec) are not supported by the numba kernel"
    feat = tuple(x.shape[2:])
    for name, val in (("beta", p.beta), ("gain", p.gain)):
        reason = _check_coef(name, val, feat, x)
        if reason is not None:
            return reason
    try:
        kind, param = p.surrogate.kernel_spec
    except (NotImplementedError, AttributeError):
        return f"surrogate {p.surrogate!r} has no kernel_spec"
    if kind not in _SURROGATES:
        return f"surrogate {kind!r} has no numba kernel (known: {sorted(_SURROGATES)})"
    if not math.isfinite(float(param)):
        return f"surrogate parameter must be finite, got {param!r}"
    return None


def _check_coef(name: str, val, feat: tuple[int, ...], x: Tensor) -> str | None:
    if isinstance(val, (int, float)):
        return None
    if not isinstance(val, Tensor):
        return f"{name} must be a float or a tensor, got {type(val).__name__}"
    if val.device.type != "cpu":
        return f"{name} is on {val.device.type}, the numba backend runs on CPU only"
    if not val.is_floating_point():
        return f"{name} must be a floating tensor, got {val.dtype}"
    try:
        ok = val.dim() <= len(feat) and torch.broadcast_shapes(val.shape, feat) == feat
    except RuntimeError:
        ok = False
    if not ok:
        return f"{name} of shape {tuple(val.shape)} does not broadcast to the feature shape {feat}"
    if torch.result_type(val, x) != x.dtype:
        return f"{name} ({val.dtype}) would promote the {x.dtype} input; cast tau to {x.dtype}"
    return None


def multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete,
               record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    """Fused multi-step LIF over ``x: [T, B, ...]``; same contract and results as the reference.

    Args:
        x: input current ``[T, B, *features]`` (float32/float64, CPU).
        state: initial ``LIFState`` shaped like ``x[0]`` or ``None`` (rest).
        p: discretised parameters (see :func:`spike.neurons.lif.discretize`).
        record: also return the membrane after every step (``state.v`` of the reference).

    Returns:
        ``(spikes [T, B, ...], final LIFState, trace [T, B, ...] or None)``.

    Raises:
        BackendError: if :func:`supports` rejects the configuration or ``state`` does not match ``x``.
    """
    return _multi_step(x, state, p, record, temporal=True)


def multi_step_spatial(x: Tensor, state: LIFState | None, p: LIFDiscrete,
                       record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    r""":func:`multi_step` with the temporal gradient path cut (SLTT, Meng et al. 2023): the same forward
    values, but the backward pass treats the state entering every step as a constant, i.e. the gradient
    of the reference run with ``LIFState(v.detach(), s.detach())`` before each step. In the reverse
    loop the carries :math:`\bar v_{t-1}` and (deferred reset) :math:`\bar s_{t-1}` are zero, so each
    step's :math:`\bar x_t = g\,\bar h_t` is local; gradients of ``beta`` and ``gain`` keep their
    per-step terms. No gradient reaches the initial ``state``.
    """
    return _multi_step(x, state, p, record, temporal=False)


def _multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete, record: bool,
                temporal: bool) -> tuple[Tensor, LIFState, Tensor | None]:
    reason = supports(p, x)
    if reason is not None:
        raise BackendError(f"backend 'numba' cannot run this lif configuration: {reason}")
    T, step_shape = x.shape[0], tuple(x.shape[1:])
    M = math.prod(step_shape)
    x2 = x.contiguous().view(T, M)  # [T, B, ...] -> [T, M]
    if state is None:
        v0 = _full(M, p.v_rest, x.dtype)
        s0 = _full(M, 0.0, x.dtype)
    else:
        for name, t in (("v", state.v), ("s", state.s)):
            if not isinstance(t, Tensor) or tuple(t.shape) != step_shape or t.dtype != x.dtype \
                    or t.device.type != "cpu":
                raise BackendError(
                    f"backend 'numba': state.{name} must be a CPU {x.dtype} tensor of shape {step_shape}, "
                    f"got {getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        v0 = state.v.reshape(M)  # [B, ...] -> [M]
        s0 = state.s.reshape(M)
    beta_m = _per_neuron(p.beta, step_shape, x.dtype)
    gain_m = _per_neuron(p.gain, step_shape, x.dtype)
    cfg = _config(p, x.dtype, T, M, temporal)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x2, v0, s0, beta_m, gain_m)):
        spikes, v_t, s_t, trace = _LIFFunction.apply(x2, v0, s0, beta_m, gain_m, cfg, record, tuple(x.shape))
    else:  # inference: no autograd node, no saved membrane
        spikes, v_t, s_t, trace, _ = _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record, shape=tuple(x.shape))
    final = LIFState(v_t.view(step_shape), s_t.view(step_shape))
    return spikes, final, (trace.view(x.shape) if record else None)


def _per_neuron(c, step_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A float or a feature-broadcastable tensor as one value per neuron ``[M]`` (autograd reduces back)."""
    if isinstance(c, Tensor):
        return c.to(dtype).expand(step_shape).contiguous().view(-1)  # [*features] -> [B, *features] -> [M]
    return _full(math.prod(step_shape), float(c), dtype)


def _full(n: int, value: float, dtype: torch.dtype) -> Tensor:
    """A constant ``[n]`` tensor made by numpy: torch would run a parallel fill for large ``n``, and
    each parallel region can cost milliseconds on a busy machine (idle OpenMP threads must be woken)."""
    return torch.from_numpy(np.full(n, value, dtype=_NP_DTYPES[dtype]))


def _config(p: LIFDiscrete, dtype: torch.dtype, T: int, M: int, temporal: bool = True) -> tuple:
    kind, param = p.surrogate.kernel_spec
    param = float(param)
    if kind == "atan":  # grad = (alpha/2) / (1 + (pi/2 * alpha * u)^2), constants as in ATan.grad
        sg1, sg2 = 0.5 * param, 0.5 * math.pi * param
    else:
        sg1, sg2 = param, 0.0
    ra, rb = {"subtract": (0.0, p.v_th), "to_value": (1.0, -p.v_reset), "none": (0.0, 0.0)}[p.reset]
    cst = (p.v_th, p.v_reset, p.v_rest, 1.0, 0.0, ra, rb, 0.0 if p.detach_reset else 1.0, sg1, sg2)
    # A work item walks time over `chunk` neighbouring neurons: rows of 16 KiB keep the hardware
    # prefetcher streaming while the item's local arrays stay in L2.
    np_dtype = _NP_DTYPES[dtype]
    nthreads = torch.get_num_threads() if T * M >= _PARALLEL_MIN else 1
    chunk = min(_CHUNK_BYTES // np.dtype(np_dtype).itemsize, max(64, -(-M // nthreads)))
    chunk = -(-chunk // 16) * 16
    return np.array(cst, dtype=np_dtype), _SURROGATES[kind], int(p.deferred), chunk, nthreads, int(temporal)


class _LIFFunction(torch.autograd.Function):
    """``(x [T,M], v0 [M], s0 [M], beta [M], gain [M]) -> (spikes [T,M], v_T [M], s_T [M], trace)``.

    Two ways to keep what the backward pass needs (same gradients, bit for bit):

    * plain BPTT (the default): the input ``x`` and the pre-reset membrane ``h`` (rows ``0..T-1`` of a
      ``[T+1, M]`` buffer whose rows ``1..T`` the backward reuses for ``dL/dx``: one float ``[T, M]``
      buffer beyond the outputs; fastest);
    * under :mod:`spike.train.memory`'s ``packed`` / ``mesa8`` hooks (:class:`private_restores`): ``x``
      and the output spikes as bits (uint8 ``[T, ceil(M/8)]``), no membrane; the backward kernel
      recomputes each neuron chunk's membranes into a small local buffer (resets from the saved spikes),
      about 2-3x the backward time of the first way, for ``[T, M]`` floats less memory.
    """

    @staticmethod
    def forward(ctx, x2, v0, s0, beta_m, gain_m, cfg, record, shape):  # type: ignore[override]
        lean = getattr(_PRIVATE, "depth", 0) > 0  # under the memory hooks: no membrane kept
        # spikes come out in the caller's [T, B, ...] shape (not as a view of a [T, M] result), so that
        # the gradient the consumer sends back is its own buffer and not a view of it (see _exclusive)
        spikes, v_t, s_t, trace, kept = _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record,
                                                     save="bits" if lean else "h", shape=shape)
        ctx.save_for_backward(x2, kept, v0, s0, beta_m, gain_m)
        ctx.lean = lean
        # lean: backward may write dL/dx over a private restored copy of x, never over x itself
        ctx.x_ptr = x2.data_ptr() if lean else None
        ctx.h_overwritten = False
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        return spikes, v_t, s_t, (trace if record else trace[:0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_v, g_s, g_trace):  # type: ignore[override]
        refs = _refs(g_spikes)  # first, alone on its line: the same frame and stack as _Probe's count
        g_free = _exclusive(g_spikes, refs)
        x2, kept, v0, s0, beta_m, gain_m = ctx.saved_tensors
        cst, sg_kind, deferred, chunk, nthreads, temporal = ctx.cfg
        T, M = x2.shape
        gs, has_gs = _time_grad(g_spikes, M, x2.dtype)
        gtr, has_gtr = _time_grad(g_trace, M, x2.dtype)
        gvT = g_v.contiguous() if g_v is not None else _full(M, 0.0, x2.dtype)
        gsT = g_s.contiguous() if g_s is not None else _full(M, 0.0, x2.dtype)
        need = ctx.needs_input_grad
        gv0, gs0, gb, gg = (torch.empty_like(v0) for _ in range(4))
        if ctx.lean:
            # dL/dx over x when x is a private copy restored by spike.train.memory's hooks (read by the
            # kernel before it is overwritten, column range by column range); else over the incoming
            # dL/dspikes when autograd handed this call the only reference to it (row t of both is read
            # before it is written). The gain gradient reads x after dL/dx is written: not over x then.
            restored = (ctx.x_ptr is not None and x2.data_ptr() != ctx.x_ptr and x2.is_contiguous()
                        and not need[4])
            if restored:
                gx = x2
            elif g_free and has_gs and gs.dtype == x2.dtype:
                gx = gs
            else:
                gx = _empty((T, M), x2.dtype)
            kernel, mem = _bwd_chunks_bits, kept.numpy()
        else:
            h = kept
            if ctx.h_overwritten:  # a second backward (retain_graph=True): the first reused h for dL/dx
                h = _run_forward(x2, v0, s0, beta_m, gain_m, ctx.cfg, False, save="h")[4]
            # dL/dx_t goes to row t+1 of h's [T+1, M] buffer: h_{t+1} is dead once step t+1 is done, and
            # writing a row that the current step does not read keeps the loops free of aliasing. A
            # foreign saved-tensor hook may hand back a [T, M] copy without that spare row: own buffer then
            spare = h.untyped_storage().nbytes() >= (h.storage_offset() + (T + 1) * M) * h.element_size()
            if spare and h.is_contiguous():
                gx = h.as_strided((T, M), (M, 1), h.storage_offset() + M)
                ctx.h_overwritten = True
            else:
                gx = _empty((T, M), x2.dtype)
            kernel, mem = _bwd_chunks_h, h.numpy()
        head = (_np(x2), mem, _np(v0), _np(s0), _np(beta_m), _np(gain_m), cst, sg_kind, deferred,
                temporal, has_gs, has_gtr, int(need[3]), int(need[4]), chunk)
        tail = (_np(gs), _np(gtr), _np(gvT), _np(gsT), gx.numpy(), gv0.numpy(), gs0.numpy(), gb.numpy(),
                gg.numpy())
        run_chunks(lambda c0, c1: kernel(*head, c0, c1, *tail), -(-M // chunk), nthreads)
        s0_used = temporal and deferred and cst[_KD] != 0.0 and (cst[_RA] != 0.0 or cst[_RB] != 0.0)
        return (gx if need[0] else None, gv0 if (need[1] and temporal) else None,
                gs0 if (need[2] and s0_used) else None,
                gb if need[3] else None, gg if need[4] else None, None, None, None)


def _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record: bool, save: str | None = None,
                 shape: tuple[int, ...] | None = None):
    """Allocate the outputs and run the forward kernel: ``(spikes, v_T, s_T, trace, kept)``.

    ``trace`` is ``[T, M]`` when recorded, else a ``[1, M]`` scratch row. ``kept`` is what ``save``
    asks for: ``"h"``, the pre-reset membrane in rows ``0..T-1`` of a ``[T+1, M]`` buffer (returned as
    the ``[T, M]`` view); ``"bits"``, the spikes as a uint8 ``[T, ceil(M / 8)]`` bit array; ``None``,
    nothing (a scratch row). ``spikes`` has ``shape`` (default ``[T, M]``).
    """
    cst, sg_kind, deferred, chunk, nthreads, _ = cfg
    T, M = x2.shape
    spikes = _empty(shape or (T, M), x2.dtype)
    bits = torch.empty(T if save == "bits" else 1, (M + 7) // 8, dtype=torch.uint8)
    h = _empty((T + 1, M), x2.dtype)[:T] if save == "h" else torch.empty(1, M, dtype=x2.dtype)
    trace = _empty_like(x2) if record else torch.empty(1, M, dtype=x2.dtype)
    v_t = torch.empty_like(v0)
    s_t = torch.empty_like(v0)
    head = (_np(x2), _np(v0), _np(s0), _np(beta_m), _np(gain_m), cst, deferred, int(record),
            int(save == "bits"), int(save == "h"), chunk)
    tail = (spikes.view(T, M).numpy(), bits.numpy(), h.numpy(), trace.numpy(), v_t.numpy(), s_t.numpy())
    run_chunks(lambda c0, c1: _fwd_chunks(*head, c0, c1, *tail), -(-M // chunk), nthreads)
    return spikes, v_t, s_t, trace, (bits if save == "bits" else h)


def _np(t: Tensor):
    return t.detach().numpy()


_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


@functools.lru_cache(maxsize=1)
def _madvise():
    """libc ``madvise`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return f


def _empty_like(t: Tensor) -> Tensor:
    return _empty(tuple(t.shape), t.dtype)


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``torch.empty`` that asks Linux for transparent huge pages when the buffer is large.

    A fresh ``[T, M]`` buffer page-faults on first touch, 4 KiB at a time; with 2 MiB pages the
    first touch of a 128 MB buffer costs several times less (measured 4x on the benchmark machine).
    The advice covers only whole huge pages inside the buffer and is ignored where THP is off.
    """
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    madvise = _madvise() if nbytes >= 4 * _HUGE_PAGE else None
    if madvise is not None:
        start = (out.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (out.data_ptr() + nbytes) & ~(_HUGE_PAGE - 1)
        madvise(start, end - start, _MADV_HUGEPAGE)  # a failure only means small pages
    return out


def _time_grad(g: Tensor | None, M: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """A ``[T, M]`` output gradient for the kernel, plus 1 if row ``t`` is step t's, 0 if row 0 serves all.

    Absent gradients become one zero row, and gradients broadcast over time (``out.sum().backward()``
    sends a stride-0 tensor) are passed as their single row instead of being materialised.
    """
    if g is None or g.numel() == 0:
        return _full(M, 0.0, dtype).view(1, M), 0
    if g.stride(0) == 0:
        return g[0].contiguous().view(1, M), 0
    return g.contiguous().view(g.shape[0], M), 1  # [T, B, ...] -> [T, M]


def _refs(g: Tensor | None) -> tuple[int, ...]:
    """Who holds ``g`` and, for a view, its base: owners of the TensorImpl, owners of the storage and
    Python references of each (zeros for what is absent)."""
    if g is None or g.is_sparse:
        return (0,) * 6
    base = g._base
    own = (g._use_count(), torch._C._storage_Use_Count(g.untyped_storage()._cdata), sys.getrefcount(g))
    if base is None:
        return own + (0, 0, 0)
    return own + (base._use_count(), int(base.is_contiguous() and base.numel() == g.numel()),
                  sys.getrefcount(base))


class _Probe(torch.autograd.Function):
    """A backward shaped like :class:`_LIFFunction`'s, run to count the references to a gradient that
    autograd hands over and nobody else holds (the counts depend on torch's internals): once as the
    consumer's own buffer, once as a view of it (a consumer that reshapes, as the layers do)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone(), x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g, g2):  # type: ignore[override]
        _PROBED.append(_refs(g))
        return g


_PROBED: list[tuple[int, ...]] = []


@functools.lru_cache(maxsize=1)
def _free_refs() -> frozenset:
    """The reference counts of an exclusive incoming gradient, measured with :class:`_Probe`; empty
    (nothing is ever overwritten) on a free-threaded CPython, whose reference counts are deferred and
    biased per thread and so cannot tell who holds a tensor."""
    import sysconfig

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return frozenset()
    with torch.enable_grad():
        x = torch.zeros(2, 4, requires_grad=True)
        (_Probe.apply(x)[0] * 2.0).sum().backward()  # MulBackward sends a fresh buffer
        (_Probe.apply(x)[0].flatten() * 2.0).sum().backward()  # ... which ViewBackward reshapes
    found = frozenset(_PROBED)
    _PROBED.clear()
    return found


def _exclusive(g: Tensor | None, refs: tuple[int, ...]) -> bool:
    """True when the incoming gradient ``g`` may be overwritten: a dense CPU buffer (or a view of all of
    one) that only this backward call holds, no user tensor, hook, other consumer's pending gradient or
    ``retain_grad`` among its owners: the reference counts of a gradient autograd hands over fresh
    (autograd's own in-place accumulation asks the same of its buffers). ``refs``: :func:`_refs` of
    ``g`` taken in the backward itself, where :class:`_Probe` takes them."""
    if g is None or not g.is_contiguous() or g.device.type != "cpu" or g.is_sparse:
        return False
    return refs in _free_refs()
