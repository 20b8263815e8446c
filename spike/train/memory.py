"""Memory-saving BPTT that keeps the temporal gradient: what the backward pass keeps, not how it flows.

Modes (``[train] memory``, :func:`parse_memory`):

* ``"none"``: plain BPTT.
* ``"packed"``: every tensor saved for backward that holds only values of the grid ``{k / 128 : k =
  0..128}`` is stored compactly and restored exactly in backward: binary tensors (spikes, all-zero
  states) as 1 bit per element, other grid tensors (average-pooled spikes: multiples of 1/4) as one
  byte per element. The restored tensors are bit-identical, so are the gradients.
  ``"packed:N"`` also runs the forward in time chunks of ``N`` steps as ``"mesa8"`` does (below): less
  memory, but the gradients equal plain BPTT's only up to float rounding, as under ``"checkpoint"``.
* ``"checkpoint"`` / ``"checkpoint:N"``: the time axis runs in chunks of ``N`` steps (default
  ``ceil(sqrt(T))``), each under :func:`torch.utils.checkpoint.checkpoint`; the backward pass reruns one
  chunk at a time from the state that entered it. The same gradient up to float rounding: the folded
  layers see ``N * B`` instead of ``T * B`` rows and the weight gradients are summed chunk by chunk
  (tested to ``rtol = 1e-4`` of each gradient's largest element). Needs a model called as
  ``model(x, state) -> (out, state)`` (:class:`~spike.synapses.Sequential`) without batch statistics
  or dropout masks drawn per call (BatchNorm, SharedDropout in training mode), which chunking would change.
* ``"mesa8"`` / ``"mesa8:N"``: ``"packed"`` for grid tensors, and every other floating tensor saved for
  backward is stored as 8 bits with an affine per-tensor scale (its own min and max at save time; Mesa,
  Pan et al. 2021, arXiv:2111.11124, keep running estimates instead) and dequantised in backward. The
  forward values are exact; the gradient is approximate (cosine to the exact one measured in
  ``bench/memory.py``). The forward runs in time chunks of ``N`` steps (default ``ceil(sqrt(T))``), the
  state of one chunk entering the next with its gradient (nothing is recomputed): only one chunk's
  float activations (a layer's output and its spikes) are alive at a time, the rest of the sequence is
  held as its 8-bit and 1-bit records. A model that cannot run in chunks (see ``"checkpoint"``) runs
  whole under ``"mesa8"``, with a warning naming the layer, and is refused under ``"mesa8:N"``.

``packed`` and ``mesa8`` are :func:`torch.autograd.graph.saved_tensors_hooks`, so they reach every
autograd ``Function`` (built-in ops and the numba kernels' ``ctx.save_for_backward``) without touching
it. Tensors stay as they are when small (under :data:`MIN_NUMEL` elements), when they are leaves that
require a gradient (parameters), or when their storage layout cannot be rebuilt (views into a much
larger buffer). A restored tensor gets the saved tensor's size, strides, storage offset and storage
size, so kernels that reuse the rest of a saved buffer still can; every unpack makes a fresh buffer, private
to the backward that asked for it (the numba LIF writes ``dL/dx`` over its restored input) and, on the CPU
for float32/float64 (where the numba LIF runs), never at the address the saved tensor had: the LIF tells
its restored input from the original by address, and a freed tensor's address is often handed out again.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from spike.core.config import MEMORY_MODES, check_memory  # the one list of modes, checked by the config too

__all__ = ["MEMORY_MODES", "MemoryModeError", "parse_memory", "check_memory", "saved_tensor_hooks",
           "pack_tensor", "unpack_tensor", "chunked_forward", "memory_forward"]

MIN_NUMEL = 4096  # smaller saved tensors are kept as they are (packing costs more than it saves)
GRID = 128  # "packed" stores tensors whose values are all k / GRID, k = 0..GRID
_MAX_STORAGE_SLACK = 1.25  # rebuild a view's storage only if it is at most this much larger than the view


class MemoryModeError(ValueError):
    """An unknown ``[train] memory`` mode, or a model the mode cannot run."""


def parse_memory(spec: str) -> tuple[str, int]:
    """``"none" | "packed" | "packed:N" | "mesa8" | "mesa8:N" | "checkpoint" | "checkpoint:N"`` ->
    ``(mode, chunk)`` (``chunk = 0``: ``ceil(sqrt(T))`` for ``checkpoint`` and ``mesa8``, whole
    sequence for ``packed``).

    Raises:
        MemoryModeError: anything else, including combinations (``"packed+checkpoint"``: inside a
            checkpointed chunk nothing is saved across chunks, so packing adds nothing to it).
    """
    if not isinstance(spec, str):
        raise MemoryModeError(f"memory mode must be a string, got {type(spec).__name__}")
    problem = check_memory(spec)
    if problem is not None:
        raise MemoryModeError(f"memory = {spec!r}: {problem}")
    mode, _, n = spec.partition(":")
    return mode, int(n) if n else 0


# --------------------------------------------------------------------------------------------------
# saved-tensor packing (pure functions: pack_tensor / unpack_tensor; the hooks only call them)
# --------------------------------------------------------------------------------------------------
def _grid_kind(t: Tensor) -> int:
    """2: every value is 0 or 1 (no -0.0); 1: every value is k/GRID, 0 <= k <= GRID; 0: neither."""
    head = t.reshape(-1)[:64]  # membranes and currents fail here, before a pass over the whole tensor
    if not _on_grid(head):
        return 0
    if not _on_grid(t):
        return 0
    return 2 if bool(((t == 0) | (t == 1)).all()) else 1


def _on_grid(t: Tensor) -> bool:
    q = t * GRID  # exact: GRID is a power of two
    return bool(((q == q.round()) & (t >= 0) & (t <= 1)).all()) and not bool(torch.signbit(t).any())


def _bitpack(flat_bool: Tensor) -> Tensor:
    n = flat_bool.numel()
    pad = (-n) % 8
    b = flat_bool.to(torch.uint8)
    if pad:
        b = torch.cat([b, b.new_zeros(pad)])
    w = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=b.device)
    return (b.view(-1, 8) * w).sum(1, dtype=torch.uint8)  # [ceil(n/8)] uint8


def _bitunpack(packed: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1  # [n/8, 8]
    return bits.reshape(-1)[:n].to(dtype)


# fused one-pass CPU kernels (numba) for float32/float64; the torch functions above are the reference
try:
    import numpy as np
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    njit = None

if njit is not None:
    _JIT = dict(cache=True, nogil=True, error_model="numpy")

    @njit(**_JIT)
    def _nb_kind(x):  # pragma: no cover - compiled
        # _grid_kind in blocks of 4096 values: branch-free inside a block (it vectorises), stops after
        # the first block holding an off-grid value (negative, -0.0, > 1, NaN, not k/128)
        n = x.shape[0]
        nonbin = False
        for b0 in range(0, n, 4096):
            bad = False
            for i in range(b0, min(n, b0 + 4096)):
                v = x[i]
                q = v * 128.0
                bad |= (math.copysign(1.0, v) < 0.0) | (v > 1.0) | (q != math.floor(q))
                nonbin |= (v != 0.0) & (v != 1.0)
            if bad:
                return 0
        return 1 if nonbin else 2

    @njit(**_JIT)
    def _nb_bitpack(x, out):  # pragma: no cover - compiled
        n = x.shape[0]
        for b in range(out.shape[0]):
            byte = 0
            base = 8 * b
            for k in range(8):
                i = base + k
                if i < n and x[i] == 1.0:
                    byte |= 128 >> k
            out[b] = byte

    @njit(**_JIT)
    def _nb_bitunpack(packed, out):  # pragma: no cover - compiled
        n = out.shape[0]
        for b in range(packed.shape[0]):
            byte = packed[b]
            base = 8 * b
            for k in range(8):
                i = base + k
                if i < n:
                    out[i] = (byte >> (7 - k)) & 1

    @njit(**_JIT)
    def _nb_to_grid(x, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            out[i] = np.uint8(x[i] * 128.0)

    @njit(**_JIT)
    def _nb_from_grid(q, out, inv):  # pragma: no cover - compiled
        for i in range(q.shape[0]):
            out[i] = q[i] * inv

    @njit(**_JIT)
    def _nb_minmax(x):  # pragma: no cover - compiled
        # (min, max), or (nan, nan) if x holds a NaN; branch-free so that it vectorises
        lo = x[0]
        hi = x[0]
        nan = False
        for i in range(x.shape[0]):
            v = x[i]
            lo = min(lo, v)
            hi = max(hi, v)
            nan |= v != v
        if nan:
            return math.nan, math.nan
        return lo, hi

    @njit(**_JIT)
    def _nb_quant(x, lo, scale, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            r = np.rint((x[i] - lo) / scale)
            out[i] = np.uint8(min(max(r, 0.0), 255.0))

    @njit(**_JIT)
    def _nb_dequant(q, lo, scale, out):  # pragma: no cover - compiled
        for i in range(q.shape[0]):
            out[i] = q[i] * scale + lo


def _fast(t: Tensor) -> bool:
    return njit is not None and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def _np_scalar(value: float, dtype: torch.dtype):
    return np.float32(value) if dtype == torch.float32 else np.float64(value)


def _layout(t: Tensor) -> tuple | None:
    """``(size, stride, offset, storage_numel)`` if ``t`` can be rebuilt in a fresh storage, else ``None``."""
    storage = t.untyped_storage().nbytes() // t.element_size()
    if not t.is_contiguous() or storage > _MAX_STORAGE_SLACK * t.numel() + 1:
        return None
    return tuple(t.shape), t.stride(), t.storage_offset(), storage


def pack_tensor(t: Tensor, quantize: bool = False, use_reference: bool = False) -> Any:
    """What the autograd graph keeps of a saved tensor ``t``: ``t`` itself, or a compact record.

    Args:
        t: a tensor saved for backward.
        quantize: also store other floating tensors as 8 bits (``mesa8``); else only grid tensors.
        use_reference: use the torch functions even where the fused numba kernels apply (tests).
    """
    if (not t.is_floating_point() or t.numel() < MIN_NUMEL or (t.requires_grad and t.is_leaf)
            or t.layout != torch.strided):
        return t
    layout = _layout(t)
    if layout is None:
        return t
    with torch.no_grad():
        fast = _fast(t) and not use_reference
        flat = t.detach().reshape(-1)
        xn = flat.numpy() if fast else None
        kind = _nb_kind(xn) if fast else _grid_kind(flat)
        if kind == 2:
            if fast:
                out = torch.empty((flat.numel() + 7) // 8, dtype=torch.uint8)
                _nb_bitpack(xn, out.numpy())
            else:
                out = _bitpack(flat == 1)
            return ("bits", layout, t.dtype, t.device, out, t.data_ptr())
        if kind == 1:
            if fast:
                out = torch.empty(flat.numel(), dtype=torch.uint8)
                _nb_to_grid(xn, out.numpy())
            else:
                out = (flat * GRID).to(torch.uint8)
            return ("grid", layout, t.dtype, t.device, out, t.data_ptr())
        if not quantize:
            return t
        if fast:
            lo, hi = (float(v) for v in _nb_minmax(xn))
        else:
            lo, hi = (float(v) for v in torch.aminmax(flat))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return t  # NaN/Inf: keep exact, the loss is broken anyway
        # the scale in t's dtype, so the fast and the reference path compute the same numbers
        scale = float(torch.tensor((hi - lo) / 255.0 if hi > lo else 1.0, dtype=t.dtype))
        if fast:
            q = torch.empty(flat.numel(), dtype=torch.uint8)
            _nb_quant(xn, _np_scalar(lo, t.dtype), _np_scalar(scale, t.dtype), q.numpy())
        else:
            q = ((flat - lo) / scale).round_().clamp_(0, 255).to(torch.uint8)
        return ("q8", layout, t.dtype, t.device, (q, lo, scale), t.data_ptr())


def unpack_tensor(rec: Any, use_reference: bool = False) -> Tensor:
    """The tensor :func:`pack_tensor` recorded: exact for ``bits``/``grid``, dequantised for ``q8``."""
    if isinstance(rec, Tensor):
        return rec
    kind, (size, stride, offset, storage), dtype, device, data, saved_at = rec
    n = math.prod(size)
    if njit is not None and device.type == "cpu" and dtype in (torch.float32, torch.float64) and not use_reference:
        from spike.backends.numba_lif import _empty  # asks for huge pages: a fresh buffer faults in faster

        buf = _empty((storage,), dtype)
        out = buf.as_strided(size, stride, offset)
        if out.data_ptr() == saved_at:
            # the saved tensor was freed and its address handed out again; the numba LIF tells a private
            # restore from the saved x by address, and would take this one for x (and allocate dL/dx).
            # Nothing is written yet, so neither buffer is resident: move on to a second one.
            buf2 = _empty((storage,), dtype)
            del buf
            buf, out = buf2, buf2.as_strided(size, stride, offset)
        on = buf[offset:offset + n].numpy()
        if kind == "bits":
            _nb_bitunpack(data.numpy(), on)
        elif kind == "grid":
            _nb_from_grid(data.numpy(), on, _np_scalar(1.0 / GRID, dtype))
        else:
            q, lo, scale = data
            _nb_dequant(q.numpy(), _np_scalar(lo, dtype), _np_scalar(scale, dtype), on)
        return out
    if kind == "bits":
        flat = _bitunpack(data, n, dtype)
    elif kind == "grid":
        flat = data.to(dtype) / GRID
    else:
        q, lo, scale = data
        flat = q.to(dtype) * scale + lo
    if offset == 0 and storage == n:
        return flat.view(size)
    buf = torch.empty(storage, dtype=dtype, device=device)
    out = buf.as_strided(size, stride, offset)
    out.copy_(flat.view(size))
    return out


def _nbytes(rec: Any) -> int:
    if isinstance(rec, Tensor):
        return rec.numel() * rec.element_size()
    data = rec[4][0] if rec[0] == "q8" else rec[4]
    return data.numel() * data.element_size()


@contextlib.contextmanager
def saved_tensor_hooks(mode: str, stats: dict | None = None):
    """Context in which autograd stores saved tensors as ``mode`` says (``"packed"`` | ``"mesa8"``;
    ``"none"`` and ``"checkpoint"`` install nothing).

    Args:
        mode: a memory mode (:func:`parse_memory`).
        stats: if given, ``stats[kind] = [count, bytes saved before, bytes kept]`` is accumulated per
            record kind (``"bits"``, ``"grid"``, ``"q8"``, ``"kept"``).
    """
    mode = parse_memory(mode)[0]
    if mode not in ("packed", "mesa8"):
        yield
        return
    quantize = mode == "mesa8"

    def pack(t: Tensor) -> Any:
        rec = pack_tensor(t, quantize)
        if stats is not None:
            row = stats.setdefault("kept" if isinstance(rec, Tensor) else rec[0], [0, 0, 0])
            row[0] += 1
            row[1] += t.numel() * t.element_size()
            row[2] += _nbytes(rec)
        return rec

    from spike.backends.numba_lif import private_restores  # every unpack below makes a fresh buffer

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack_tensor), private_restores():
        yield


# --------------------------------------------------------------------------------------------------
# checkpointed time chunks
# --------------------------------------------------------------------------------------------------
def _check_chunkable(model: nn.Module, mode: str = "checkpoint") -> None:
    import inspect

    try:
        takes_state = "state" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes_state = False
    if not takes_state:
        raise MemoryModeError(f"memory = {mode!r} needs a model called as model(x, state) -> (out, state) "
                              f"(spike.synapses.Sequential); {type(model).__name__} takes no state")
    from spike.synapses import MaxMembrane, MeanMembrane, SharedDropout, SpikeCount
    from spike.synapses.delays import TimePad

    for name, m in model.named_modules():
        per_call = (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training) or \
            (isinstance(m, SharedDropout) and m.training and m.p > 0)
        if per_call:
            raise MemoryModeError(f"memory = {mode!r} would change layer {name!r} ({type(m).__name__}): its "
                                  f"batch statistics / dropout mask would be drawn per chunk instead of per "
                                  f"sequence; use memory = 'packed' (or 'mesa8', which then runs whole)")
        if isinstance(m, (SpikeCount, MeanMembrane, MaxMembrane, TimePad)):
            raise MemoryModeError(f"memory = {mode!r} needs one output per step; layer {name!r} "
                                  f"({type(m).__name__}) changes the time axis (put a reduction in the loss)")


def chunked_forward(model: nn.Module, x: Tensor, chunk: int = 0, recompute: bool = True,
                    mode: str = "checkpoint") -> Tensor:
    """``model`` over ``x: [T, B, ...]`` in chunks of ``chunk`` steps (0: ``ceil(sqrt(T))``), the state of
    one chunk entering the next; returns the output ``[T, B, ...]``. ``recompute``: each chunk under
    :func:`torch.utils.checkpoint.checkpoint` (rerun in backward); else the chunks are plain autograd,
    connected through the state."""
    from torch.utils.checkpoint import checkpoint

    _check_chunkable(model, mode)
    n_steps = x.shape[0]
    chunk = chunk or max(1, math.ceil(math.sqrt(n_steps)))
    state, outs = None, []
    for t0 in range(0, n_steps, chunk):
        xc = x[t0:t0 + chunk]
        if recompute:
            res = checkpoint(model, xc, state, use_reentrant=False, preserve_rng_state=True)
        else:
            res = model(xc, state)
        if res[0].shape[0] != xc.shape[0]:
            raise MemoryModeError(f"memory = {mode!r}: the model turned a chunk of {xc.shape[0]} steps into "
                                  f"{res[0].shape[0]}; it needs one output per input step")
        outs.append(res[0])
        state = res[1]
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def memory_forward(model: nn.Module, x: Tensor, mode: str, output: Callable[[Any], Tensor]) -> Tensor:
    """The training forward pass under ``mode``: ``output(model(x))`` for ``none``/``packed``, chunked
    for ``checkpoint`` (recomputed in backward), ``mesa8`` and ``packed:N`` (kept; call it inside
    :func:`saved_tensor_hooks`, as for ``packed``). ``mesa8`` without a chunk length runs a model that
    cannot be chunked whole, with a warning."""
    name, chunk = parse_memory(mode)
    if name == "checkpoint":
        return chunked_forward(model, x, chunk)
    if name == "packed" and chunk:
        return chunked_forward(model, x, chunk, recompute=False, mode=mode)
    if name == "mesa8":
        if not chunk:
            try:
                _check_chunkable(model, mode)
            except MemoryModeError as e:
                warn_whole(str(e))
                return output(model(x))
        return chunked_forward(model, x, chunk, recompute=False, mode=mode)
    return output(model(x))


def warn_whole(reason: str) -> None:
    """Say (``RuntimeWarning``) that ``mesa8`` runs a model over the whole sequence, and why."""
    import warnings

    warnings.warn(f"{reason}; memory = 'mesa8' runs this model over the whole sequence at once (8-bit "
                  f"records, no time chunks: more memory)", RuntimeWarning, stacklevel=3)
