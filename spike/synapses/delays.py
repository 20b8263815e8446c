r"""Learnable synaptic delays with Dilated Convolutions with Learnable Spacings (DCLS).

Each synapse ``(o, i)`` has a weight :math:`w_{oi}` and a real-valued delay position
:math:`p_{oi} \in [0, D]` (``D = max_delay`` steps). Training uses a Gaussian kernel of width
:math:`\sigma` along time, centred on the position and normalised over the ``K = D + 1`` taps, so
the loss is differentiable in :math:`p` (Hammouamri, Khalfaoui-Hassani & Masquelier, ICLR 2024,
arXiv:2306.17670, doi:10.48550/arXiv.2306.17670):

.. math::
    g_{oi}(d) = \frac{\exp\!\big(-\tfrac12 (d - p_{oi})^2 / \sigma^2\big)}
                     {\sum_{d'=0}^{D} \exp\!\big(-\tfrac12 (d' - p_{oi})^2 / \sigma^2\big)},
    \qquad
    y_t[o] = b_o + \sum_i \sum_{d=0}^{D} w_{oi}\, g_{oi}(d)\, x_{t-d}[i]

The layer is causal (:math:`y_t` uses :math:`x_{\le t}` only). :math:`\sigma` shrinks during
training (:class:`spike.train.callbacks.SigmaSchedule`); in ``eval()`` mode, or with
:math:`\sigma = 0`, positions are **rounded** to integers and the kernel is one-hot: exact integer
delays, :math:`y_t[o] = b_o + \sum_i w_{oi}\, x_{t - \mathrm{round}(p_{oi})}[i]`.

Memory: one call builds one ``[C_out, C_in, K]`` kernel and applies it as one ``conv1d`` over time;
there is no ``[T, B, C_out, C_in]`` intermediate. A custom autograd function saves only ``w`` and ``p``
and recomputes the Gaussian in backward in blocks of rows, so backward too holds a single
kernel-sized tensor (the kernel's gradient).

State: the last ``K - 1`` input steps. Running a sequence in chunks, or one step at a time, gives the
same output as running it whole (the streaming / SLTT contract).

Mapping to the ``dcls`` package (``DCLS.construct.modules.Dcls1d``, ``version="gauss"``,
``kernel_count=1``, odd ``dilated_kernel_size = K``): its ``P`` is centred
(``P = (K-1)/2 - p``), its Gaussian width is ``|SIG| + 0.27`` (so ``SIG = sigma - 0.27``), its
kernel is a cross-correlation (index ``j`` is delay ``K-1-j``), and the SNN-delays code pads the
input with ``K-1`` zeros on the left (causal) and ``(K-1)//2`` on the right (extra output steps);
its first ``T`` outputs equal ours (tested to 1e-5; it adds ``1e-7`` to the normaliser, we do not, so
that an integer position with a tiny :math:`\sigma` gives an exactly one-hot kernel).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spike.neurons.scan import check_sequence

__all__ = ["MAX_DELAY", "DelayState", "check_max_delay", "check_sigma", "delay_kernel",
           "delayed_linear", "DelayedLinear", "TimePad", "delay_layers", "split_delay_parameters"]

MAX_DELAY = 4096
"""Largest accepted ``max_delay`` (steps); larger kernels are almost certainly a unit mistake (µs vs steps)."""


class DelayState(NamedTuple):
    """The last ``K - 1 = max_delay`` input steps, oldest first: ``buf [max_delay, B, C_in]``."""

    buf: Tensor


def check_max_delay(max_delay: int) -> int:
    """Return ``max_delay`` if it is an int in ``[0, MAX_DELAY]``, else raise ``ValueError``."""
    if isinstance(max_delay, bool) or not isinstance(max_delay, int):
        raise ValueError(f"max_delay must be an integer number of time steps, got {max_delay!r}")
    if max_delay < 0:
        raise ValueError(f"max_delay must be >= 0 (steps), got {max_delay}")
    if max_delay > MAX_DELAY:
        raise ValueError(f"max_delay={max_delay} steps is too large (limit {MAX_DELAY}); the kernel has "
                         f"max_delay+1 taps per synapse; express delays in time steps, not microseconds")
    return max_delay


def check_sigma(sigma: float) -> float:
    """Return ``float(sigma)`` if it is finite and ``>= 0``, else raise ``ValueError``."""
    s = float(sigma)
    if not (s >= 0.0 and math.isfinite(s)):
        raise ValueError(f"sigma (Gaussian delay-kernel width, steps) must be finite and >= 0, got {sigma!r}")
    return s


def _taps(k: int, like: Tensor) -> Tensor:
    """Delays of the kernel taps in conv1d (cross-correlation) order: ``[K-1, ..., 1, 0]``."""
    return torch.arange(k - 1, -1, -1, dtype=like.dtype, device=like.device)  # [K]


class _GaussKernel(torch.autograd.Function):
    """``w * normalised Gaussian(p, sigma)`` in conv order; backward recomputes, saving only ``w, p``."""

    @staticmethod
    def forward(ctx, weight: Tensor, pos: Tensor, sigma: float, k: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(weight, pos)
        ctx.sigma, ctx.k = sigma, k
        g = _taps(k, pos) - pos.unsqueeze(-1)  # [C_out, C_in, K], the only kernel-sized buffer
        g.div_(sigma).square_().mul_(-0.5).exp_()
        norm = g.sum(-1, keepdim=True).clamp_min_(torch.finfo(g.dtype).tiny)  # [C_out, C_in, 1]
        return g.mul_(weight.unsqueeze(-1) / norm)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weight, pos = ctx.saved_tensors
        sigma, k = ctx.sigma, ctx.k
        taps = _taps(k, pos)
        g_w = torch.empty_like(weight) if ctx.needs_input_grad[0] else None
        g_pos = torch.empty_like(pos) if ctx.needs_input_grad[1] else None
        rows = max(1, _BACKWARD_CHUNK // max(1, pos.shape[1] * k))  # cap the temporaries' size
        for r in range(0, pos.shape[0], rows):
            sl = slice(r, r + rows)
            z = (taps - pos[sl].unsqueeze(-1)).div_(sigma)  # [rows, C_in, K]
            n = z.square().mul_(-0.5).exp_()
            n.div_(n.sum(-1, keepdim=True).clamp_min_(torch.finfo(n.dtype).tiny))  # normalised Gaussian
            gr = grad[sl]
            b = torch.einsum("oik,oik->oi", gr, n)  # d loss / d w
            if g_w is not None:
                g_w[sl] = b
            if g_pos is not None:
                nz = n.mul_(z)
                # dn_d/dp = (n_d z_d - n_d sum_j n_j z_j) / sigma
                a = torch.einsum("oik,oik->oi", gr, nz)
                g_pos[sl] = weight[sl] * (a - b * nz.sum(-1)) / sigma
        return g_w, g_pos, None, None


_BACKWARD_CHUNK = 1 << 20
"""Elements per block of the kernel the backward recomputes at once (keeps it to one kernel-sized tensor)."""


def _kernel_conv_order(weight: Tensor, pos: Tensor, sigma: float, max_delay: int, hard: bool) -> Tensor:
    k = max_delay + 1
    if hard or sigma == 0.0:
        idx = pos.detach().round().clamp_(0, max_delay).long()  # [C_out, C_in], rounded delays
        index = (max_delay - idx).unsqueeze(-1)  # conv-order tap of each delay
        return torch.zeros(*weight.shape, k, dtype=weight.dtype, device=weight.device).scatter_(
            -1, index, weight.unsqueeze(-1))  # [C_out, C_in, K], one-hot
    return _GaussKernel.apply(weight, pos, sigma, k)


def delay_kernel(weight: Tensor, pos: Tensor, sigma: float, max_delay: int, hard: bool = False) -> Tensor:
    """The delay kernel ``[C_out, C_in, K]`` indexed by delay (``[..., d]`` weights ``x_{t-d}``).

    Args:
        weight: ``[C_out, C_in]`` synaptic weights.
        pos: ``[C_out, C_in]`` delay positions in steps.
        sigma: Gaussian width in steps; ``0`` (or ``hard=True``) gives the rounded one-hot kernel.
        max_delay: largest delay ``D``; the kernel has ``D + 1`` taps.
        hard: use rounded integer positions.
    """
    check_max_delay(max_delay)
    return _kernel_conv_order(weight, pos, check_sigma(sigma), max_delay, hard).flip(-1)


def delayed_linear(x: Tensor, weight: Tensor, pos: Tensor, sigma: float, max_delay: int,
                   state: DelayState | None = None, bias: Tensor | None = None,
                   hard: bool = False) -> tuple[Tensor, DelayState]:
    r"""Delayed fully connected layer over ``x: [T, B, C_in]`` (pure function).

    .. math:: y_t[o] = b_o + \sum_i \sum_{d=0}^{D} w_{oi}\, g_{oi}(d)\, x_{t-d}[i]

    Args:
        x: ``[T, B, C_in]`` input.
        weight: ``[C_out, C_in]`` weights.
        pos: ``[C_out, C_in]`` delay positions (steps).
        sigma: Gaussian width (steps); ``0`` or ``hard=True``: rounded integer delays.
        max_delay: ``D``, the largest delay in steps.
        state: the previous ``D`` input steps (``None``: zeros, i.e. silence before ``t = 0``).
        bias: optional ``[C_out]``.

    Returns:
        ``(y [T, B, C_out], new state)``.
    """
    t, b, c_in = x.shape
    d = max_delay
    if state is not None and tuple(state.buf.shape) != (d, b, c_in):
        raise ValueError(f"delay state has shape {tuple(state.buf.shape)}, expected {(d, b, c_in)} "
                         f"([max_delay, B, C_in]); pass state=None to start from silence")
    kernel = _kernel_conv_order(weight, pos, sigma, d, hard)  # [C_out, C_in, K]
    x_ct = x.permute(1, 2, 0)  # [B, C_in, T] view
    if state is None:
        xs = F.pad(x_ct, (d, 0))  # [B, C_in, D + T], silence before t = 0
    else:
        xs = torch.cat([state.buf.permute(1, 2, 0), x_ct], -1)  # [B, C_in, D + T]
    y = F.conv1d(xs, kernel, bias)  # [B, C_out, T]
    new_buf = xs[..., t:].clone().permute(2, 0, 1)  # [D, B, C_in], the last D steps
    return y.permute(2, 0, 1), DelayState(new_buf)  # [T, B, C_out]


class DelayedLinear(nn.Module):
    r"""Fully connected layer with one learnable delay per synapse (DCLS, Gaussian kernel).

    A stateful layer: ``forward(x, state=None, record=False) -> (y, state, None)``, so
    :class:`~spike.synapses.Sequential` threads its input buffer like a neuron's membrane.

    Args:
        in_features: ``C_in``.
        out_features: ``C_out``.
        max_delay: largest delay ``D`` in time steps (kernel of ``D + 1`` taps).
        sigma: initial Gaussian width in steps (default ``max_delay / 2``); changed by
            :meth:`set_sigma` (see :class:`spike.train.callbacks.SigmaSchedule`).
        bias: add a bias (the SHD recipe has none).

    Initialisation: weights ``kaiming_uniform_(nonlinearity="relu")`` (bound :math:`\sqrt{6/C_{in}}`,
    as in the paper; the kernel is normalised so :math:`w` is the total synaptic weight), positions
    uniform in ``[0, D]``.

    Modes: ``train()`` uses the Gaussian kernel (positions receive gradients); ``eval()`` uses rounded
    integer positions and :math:`\sigma \to 0` (exact integer delays, no position gradient).

    Training strategies: with BPTT the state carries the graph across chunks. With SLTT (state
    detached between steps) weights and positions still get exact gradients for the current step's
    output, but nothing flows back into *earlier* steps of the layer below; the combination is
    meaningful and allowed.

    Shape:
        input ``[T, B, C_in]`` → output ``[T, B, C_out]``; state ``buf [D, B, C_in]``.

    Example:
        >>> layer = DelayedLinear(4, 3, max_delay=5)
        >>> y, state, _ = layer(torch.rand(10, 2, 4))
        >>> y.shape, state.buf.shape
        (torch.Size([10, 2, 3]), torch.Size([5, 2, 4]))
    """

    def __init__(self, in_features: int, out_features: int, max_delay: int, *, sigma: float | None = None,
                 bias: bool = False):
        super().__init__()
        self.max_delay = check_max_delay(max_delay)
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.pos = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        s = check_sigma(max_delay / 2 if sigma is None else sigma)
        self.register_buffer("sigma", torch.tensor(s))  # saved in checkpoints; set by the schedule
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        with torch.no_grad():
            self.pos.uniform_(0.0, float(self.max_delay))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def set_sigma(self, sigma: float) -> None:
        """Set the Gaussian width (steps, ``>= 0``) used in training mode."""
        self.sigma.fill_(check_sigma(sigma))

    @torch.no_grad()
    def clamp_positions_(self) -> None:
        """Clamp positions into ``[0, max_delay]`` in place (call after an optimiser step)."""
        self.pos.clamp_(0.0, float(self.max_delay))

    def delays(self) -> Tensor:
        """Integer delays ``[C_out, C_in]`` used in eval mode (rounded, clamped positions)."""
        return self.pos.detach().round().clamp(0, self.max_delay).long()

    def kernel(self) -> Tensor:
        """The ``[C_out, C_in, D + 1]`` kernel of the current mode, indexed by delay."""
        return delay_kernel(self.weight, self.pos, float(self.sigma), self.max_delay, hard=not self.training)

    def forward(self, x: Tensor, state: DelayState | None = None,
                record: bool = False) -> tuple[Tensor, DelayState, None]:
        check_sequence(x, "DelayedLinear input")
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"DelayedLinear expects [T, B, {self.in_features}], got {tuple(x.shape)}")
        y, state = delayed_linear(x, self.weight, self.pos, float(self.sigma), self.max_delay, state,
                                  self.bias, hard=not self.training)
        return y, state, None

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, max_delay={self.max_delay}, "
                f"sigma={float(self.sigma):.3g}, bias={self.bias is not None}")


class TimePad(nn.Module):
    """Append ``n`` silent steps: ``[T, B, ...] -> [T + n, B, ...]``.

    The SNN-delays recipe pads every delayed layer's input with ``(K-1)//2`` zeros at the end so that
    late spikes still reach the readout. Not streaming-compatible (every chunk would be padded):
    use ``n = 0`` (``[model] delay_pad = 0``) for chunked inference; SLTT refuses layers that change
    the time axis with a clear ``SLTTError``.
    """

    def __init__(self, n: int):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"TimePad needs an integer n >= 0, got {n!r}")
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, "TimePad input", 2)
        if self.n == 0:
            return x
        return torch.cat([x, x.new_zeros(self.n, *x.shape[1:])], 0)  # [T + n, B, ...]

    def extra_repr(self) -> str:
        return f"n={self.n}"


def delay_layers(model: nn.Module) -> list[DelayedLinear]:
    """Every :class:`DelayedLinear` inside ``model``."""
    return [m for m in model.modules() if isinstance(m, DelayedLinear)]


def split_delay_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(other trainable parameters, delay positions)`` for separate optimiser groups."""
    positions = [m.pos for m in delay_layers(model) if m.pos.requires_grad]
    ids = {id(p) for p in positions}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return others, positions
