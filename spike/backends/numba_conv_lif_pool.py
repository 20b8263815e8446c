r"""A ``Conv2d -> LIF -> AvgPool2d`` block run in time chunks on the CPU.

Backend ``"numba"`` of the ``"conv_lif_avgpool"`` block, which :class:`spike.synapses.Sequential` asks
for when a :class:`~spike.synapses.Conv2d` is followed by a LIF / IF and an ``AvgPool2d`` that the
fused ``"lif_avgpool"`` pair (:mod:`spike.backends.numba_lif_pool`) runs. It computes the same three
layers,

.. math:: x_t = W \star u_t + b,\quad h_t = \beta v_{t-1} + g x_t,\quad s_t = H(h_t - v_{th}),
          \quad v_t = R(h_t, s_t),\quad y_t = \mathrm{avgpool}(s_t),

but a chunk of :func:`chunk_steps` time steps at a time: the convolution of the chunk's inputs (torch's
own kernel), then the fused LIF + pooling kernels on its output, the membrane carried from chunk to
chunk. The convolution's ``[T, B, C, H, W]`` output is never held whole:

* in the forward pass, only one chunk of it is alive;
* plain BPTT keeps the pre-reset membranes ``h`` (what the LIF backward reads; the backward writes
  ``dL/dx`` over them), not the convolution's output besides them;
* under the ``packed`` / ``mesa8`` memory modes (:mod:`spike.train.memory`) it keeps the convolution's
  *input* (spikes or events, which those modes store as bits or bytes), the spikes as bits and the
  membrane entering each chunk, and the backward pass recomputes one chunk's convolution at a time,
  from the same call on the same rows as the forward pass (so the same values, bit for bit), then the
  chunk's membranes from it;
* the backward pass walks the chunks in reverse, the membrane gradient carried across, and computes
  the convolution's gradients chunk by chunk (the weight gradient summed over chunks, last chunk
  first), so neither ``dL/dx`` nor the convolution backward's working copies are ever full-size.

Every memory mode runs the same chunks and sums in the same order, so ``packed`` gives plain BPTT's
gradients bit for bit (``tests/equivalence/test_numba_conv_lif_pool.py``). Against the three layers run
separately: the same outputs and state where torch's convolution of a chunk equals its convolution of
the whole batch (it did for every tested shape with at least 16 samples per chunk), the same input
gradient, and the weight and bias gradients to float rounding (a sum over chunks instead of one
reduction). A sequence that fits one chunk :func:`prefers` to leave to the convolution and the pair,
bit for bit the three layers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spike.backends import numba_lif as NL
from spike.backends import numba_lif_pool as NLP

__all__ = ["supports", "prefers", "conv_lif_avgpool", "chunk_steps", "CHUNK_BYTES"]

#: A time chunk holds about this many bytes of the convolution's output (at least one step).
CHUNK_BYTES = 16 << 20


def chunk_steps(T: int, step_numel: int, itemsize: int) -> int:
    """At most this many time steps per chunk for a convolution output of ``step_numel`` elements per step
    (the chunks of a sequence are then made as even as possible)."""
    return max(1, min(T, CHUNK_BYTES // max(1, step_numel * itemsize)))


def _conv_args(conv) -> tuple | str:
    """``(stride, padding, dilation, groups)`` as int pairs, or the reason the block cannot run ``conv``."""
    from torch.nn.modules.utils import _pair

    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r} (zeros only)"
    k, d = _pair(conv.kernel_size), _pair(conv.dilation)
    if conv.padding == "valid":
        pad = (0, 0)
    elif conv.padding == "same":
        if any(di * (ki - 1) % 2 for ki, di in zip(k, d)):
            return "padding='same' with an even kernel extent (torch pads one side more)"
        pad = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    else:
        pad = _pair(conv.padding)
    return _pair(conv.stride), pad, d, conv.groups


def _out_shape(conv, x: Tensor, args: tuple) -> tuple[int, ...]:
    """``[T, B, C_out, H', W']`` of ``conv`` on ``x [T, B, C, H, W]``."""
    (sh, sw), (ph, pw), (dh, dw), _ = args
    kh, kw = conv.kernel_size
    h = (x.shape[3] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w = (x.shape[4] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (x.shape[0], x.shape[1], conv.out_channels, h, w)


def supports(params: tuple, x: Tensor) -> str | None:
    """``None`` if ``params = (conv, lif, pool, state)`` on ``x [T, B, C, H, W]`` runs in time chunks here,
    else the reason (``Sequential`` then runs the convolution, and the pair, on their own)."""
    from spike.synapses.layers import Conv2d

    conv, lif, pool, state = params
    if type(conv) is not Conv2d:
        return f"not a spike Conv2d ({type(conv).__name__})"
    if conv._forward_hooks or conv._forward_pre_hooks:
        return "forward hooks see the convolution's output"
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[0] == 0 or x.shape[2] != conv.in_channels:
        return "input is not [T, B, C_in, H, W]"
    if x.device.type != "cpu" or conv.weight.device.type != "cpu":
        return "not on the CPU"
    if x.dtype not in (torch.float32, torch.float64) or conv.weight.dtype != x.dtype:
        return f"dtype {x.dtype} / weight {conv.weight.dtype}"
    args = _conv_args(conv)
    if isinstance(args, str):
        return args
    shape = _out_shape(conv, x, args)
    if min(shape) <= 0:
        return f"the convolution's output {shape} is empty"
    return NLP.supports((lif, pool, state), x.new_empty(shape))  # an untouched buffer: only its shape counts


def prefers(params: tuple, x: Tensor) -> str | None:
    """For ``backend="auto"``: a sequence that fits one time chunk gains nothing from the chunks, and
    the convolution followed by the fused pair computes it bit for bit as the separate layers do."""
    conv = params[0]
    shape = _out_shape(conv, x, _conv_args(conv))
    if chunk_steps(shape[0], math.prod(shape[1:]), x.element_size()) >= shape[0]:
        return "the whole sequence fits one time chunk (the convolution and the fused pair run it)"
    return None


class _Plan:
    """One call's shapes, time chunks and convolution arguments, and the pair's kernels (``NLP._Run``)."""

    def __init__(self, p, pool, probe: Tensor, args: tuple):
        # probe: an untouched [T, B, C_out, H', W'] buffer of the convolution output's shape and dtype
        self.args = args
        self.T, self.B = probe.shape[0], probe.shape[1]
        self.out_step = tuple(probe.shape[2:])  # [C_out, H', W']
        self.M = math.prod(probe.shape[1:])
        n = -(-self.T // chunk_steps(self.T, self.M, probe.element_size()))  # chunks of at most chunk_steps
        self.S = -(-self.T // n)  # steps, as even as possible (no short last chunk)
        self.chunks = [(t, min(t + self.S, self.T)) for t in range(0, self.T, self.S)]
        kernel, _, _, _, _, divisor = NLP._pool_args(pool)
        self.run = NLP._Run(p, probe[:self.S], kernel, float(divisor or kernel[0] * kernel[1]))
        self.pooled_shape = (self.T, *self.run.pooled_shape[1:])
        self.dtype = probe.dtype

    def conv(self, inp: Tensor, weight: Tensor, bias: Tensor | None, t0: int, t1: int) -> Tensor:
        """The convolution of steps ``t0:t1`` as ``[t1 - t0, M]`` (one call per chunk, in every pass)."""
        stride, pad, dil, groups = self.args
        z = nn.functional.conv2d(inp[t0 * self.B:t1 * self.B], weight, bias, stride, pad, dil, groups)
        return z.contiguous().view(t1 - t0, self.M)  # [n*B, C, H', W'] -> [n, M]

    def forward(self, inp, weight, bias, v, beta_m, gain_m, pooled2, hsave=None, bits=None, starts=None):
        """Every chunk in order: its convolution, then the LIF + pooling kernels from the membrane ``v``
        carried over, writing ``pooled2 [T, P]`` and, when given, ``hsave`` / ``bits`` rows (see
        ``NLP._Run.forward_into``); ``starts`` collects the membrane entering each chunk. Returns the
        final ``(v, s)``."""
        s = None
        for t0, t1 in self.chunks:
            if starts is not None:
                starts.append(v)
            v, s = self.run.forward_into(self.conv(inp, weight, bias, t0, t1), v, beta_m, gain_m, pooled2[t0:t1],
                                         hsave=None if hsave is None else hsave[t0:t1],
                                         bits=None if bits is None else bits[t0:t1])
        return v, s


class _ConvLIFPoolFn(torch.autograd.Function):
    """``(inp [T*B, C, H, W], weight, bias, v0 [M], beta [M], gain [M]) -> (pooled [T, P], v_T, s_T)``."""

    @staticmethod
    def forward(ctx, inp, weight, bias, v0, beta_m, gain_m, plan):  # type: ignore[override]
        lean = getattr(NL._PRIVATE, "depth", 0) > 0
        T, M = plan.T, plan.M
        pooled = torch.empty(plan.pooled_shape, dtype=plan.dtype)
        pooled2 = pooled.view(T, -1)
        # plain BPTT: the pre-reset membranes in rows 0..T-1 of a [T+1, M] buffer whose rows 1..T the
        # backward reuses for dL/dx (as the pair does); lean: the spikes as bits
        kept = torch.empty(T, (M + 7) // 8, dtype=torch.uint8) if lean else NL._empty((T + 1, M), plan.dtype)
        starts = []  # lean: the membrane entering each chunk (what its recompute starts from)
        if lean:
            v, s = plan.forward(inp, weight, bias, v0.detach(), beta_m, gain_m, pooled2, bits=kept, starts=starts)
        else:
            v, s = plan.forward(inp, weight, bias, v0.detach(), beta_m, gain_m, pooled2, hsave=kept)
        ctx.save_for_backward(inp, weight, bias, kept, beta_m, gain_m)
        ctx.plan, ctx.lean, ctx.starts, ctx.h_used = plan, lean, starts, False
        ctx.v0 = None if lean else v0.detach()  # plain: a second backward recomputes h from here
        return pooled, v, s

    @staticmethod
    def backward(ctx, gp, gvT, gsT):  # type: ignore[override]
        inp, weight, bias, kept, beta_m, gain_m = ctx.saved_tensors
        plan = ctx.plan
        T, M, B = plan.T, plan.M, plan.B
        stride, pad, dil, groups = plan.args
        need_in, need_w, need_b, need_v0 = ctx.needs_input_grad[:4]
        z = NL._full(M, 0.0, plan.dtype)
        gp2 = torch.zeros(plan.pooled_shape, dtype=plan.dtype) if gp is None else gp.contiguous()
        gp2 = gp2.view(T, -1)
        gv = z if gvT is None else gvT.contiguous()
        gs = z if gsT is None else gsT.contiguous()
        gin = torch.empty_like(inp) if need_in else None
        gw = gb = None
        if not ctx.lean and ctx.h_used:  # a second backward (retain_graph): the first wrote dL/dx over h
            kept = NL._empty((T + 1, M), plan.dtype)
            plan.forward(inp, weight, bias, ctx.v0, beta_m, gain_m, torch.empty(T, gp2.shape[1], dtype=plan.dtype),
                         hsave=kept)
        ctx.h_used = True
        mask = [need_in, need_w, bias is not None and need_b]
        gs0, gbeta, ggain = (torch.empty(M, dtype=plan.dtype) for _ in range(3))  # written, not needed
        for c in range(len(plan.chunks) - 1, -1, -1):  # last chunk first, the membrane gradient carried back
            t0, t1 = plan.chunks[c]
            gv0 = torch.empty(M, dtype=plan.dtype)  # a new buffer: the kernel still reads gv, the carry in
            if ctx.lean:
                gx = plan.conv(inp, weight, bias, t0, t1)  # the forward's values; dL/dx is written over them
                plan.run.backward_bits(gx, kept[t0:t1], ctx.starts[c], beta_m, gain_m, gp2[t0:t1], z.view(1, M), gv, gs,
                                       gx, gv0, gs0, gbeta, ggain)
            else:  # dL/dx of step t over row t + 1: h of steps >= t + 1 has been read by then (this chunk's
                # later steps first; row t1 is the next chunk's, done before this one)
                gx = kept[t0 + 1:t1 + 1]
                plan.run.backward(kept[t0:t1], beta_m, gain_m, gp2[t0:t1], z.view(1, M), gv, gs, gx, gv0, gs0, gbeta,
                                  ggain)
            gv, gs = gv0, z  # the immediate reset never reads the previous step's spikes
            if any(mask):
                g_in, g_w, g_b = torch.ops.aten.convolution_backward(
                    gx.view(t1 - t0, B, *plan.out_step).flatten(0, 1), inp[t0 * B:t1 * B], weight,
                    [weight.shape[0]] if bias is not None else None, list(stride), list(pad), list(dil), False, [0, 0],
                    groups, mask)
                if need_in:
                    gin[t0 * B:t1 * B] = g_in
                if mask[1]:
                    gw = g_w if gw is None else gw.add_(g_w)
                if mask[2]:
                    gb = g_b if gb is None else gb.add_(g_b)
        return gin, gw, gb, (gv if need_v0 else None), None, None, None


def conv_lif_avgpool(conv, lif, pool, x: Tensor, state):
    """``pool(lif(conv(x), state).spikes)`` and the LIF's final state, in time chunks (module docstring).

    Returns:
        ``(pooled [T, B, C_out, H'', W''], LIFState)``.
    """
    from spike.neurons import lif as F
    from spike.neurons.modules import checked_input
    from spike.synapses.layers import _check, fold

    _check(x, "Conv2d input", 5)
    args = _conv_args(conv)
    probe = x.new_empty(_out_shape(conv, x, args))  # an untouched buffer: the LIF's shape and state checks
    with checked_input():  # finite input through finite weights stays finite (as in Sequential)
        p = lif.check_input(probe, state)
    plan = _Plan(p, pool, probe, args)
    del probe
    step_shape = (plan.B, *plan.out_step)
    inp = fold(x).contiguous()  # [T*B, C, H, W]
    if state is None:
        v0 = NL._full(plan.M, p.v_rest, x.dtype)
    else:
        v0 = state.v.reshape(plan.M).contiguous()  # [B, C, H, W] -> [M]
    beta_m = NL._per_neuron(p.beta, step_shape, x.dtype)
    gain_m = NL._per_neuron(p.gain, step_shape, x.dtype)
    bias = conv.bias
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (inp, conv.weight, bias, v0)):
        pooled, v_t, s_t = _ConvLIFPoolFn.apply(inp, conv.weight, bias, v0, beta_m, gain_m, plan)
    else:
        pooled = torch.empty(plan.pooled_shape, dtype=x.dtype)
        with torch.no_grad():
            v_t, s_t = plan.forward(inp, conv.weight, bias, v0, beta_m, gain_m, pooled.view(plan.T, -1))
    return pooled, F.LIFState(v_t.view(step_shape), s_t.view(step_shape))
