r"""NoProp-DT for spiking networks: every block learns on its own to denoise a noisy label embedding.

NoProp (Li, Teh & Pascanu 2025, arXiv:2503.24322), discrete-time variant. A chain of latents
:math:`z_0 \to z_1 \to \dots \to z_T` (``T`` = ``[train] noprop_steps`` = the number of blocks) starts
from noise :math:`z_0 \sim \mathcal N(0, I)` and ends near the class embedding :math:`u_y = W_{\text{embed}}[y]`
(a learnable ``[C, E]`` matrix). The fixed variational posterior is Gaussian,

.. math::
    q(z_t \mid y) = \mathcal N\big(\sqrt{\bar\alpha_t}\, u_y,\ (1 - \bar\alpha_t) I\big),\qquad
    \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t},

with :math:`\bar\alpha_t` increasing in ``t``. **Schedule** (:func:`cosine_alpha_bar`): the cosine
schedule of Nichol & Dhariwal (2021) over ``K = T + 1`` noise levels, the latent :math:`z_t` sitting at
diffusion index :math:`k = T + 1 - t` (so :math:`z_0` is the pure-noise level, :math:`z_T` the first
noisy level next to the clean :math:`u_y`):

.. math::
    f(\tau) = \cos^2\!\Big(\frac{\pi}{2}\,\frac{\tau + s}{1 + s}\Big),\quad s = 0.008,\qquad
    \bar\alpha_t = f\big(\tfrac{T + 1 - t}{T + 1}\big) / f(0).

Block :math:`t` (:class:`DenoiseBlock`) sees the input :math:`x` and :math:`z_{t-1}` and predicts the
clean embedding :math:`\hat u_t(z_{t-1}, x)`. **Objective** (the paper's DT loss, all three terms):

.. math::
    \mathcal L = \underbrace{\mathbb E_{q(z_T\mid y)}\big[-\log \hat p(y \mid z_T)\big]}_{\text{classifier}}
    + \underbrace{D_{\mathrm{KL}}\big(q(z_0 \mid y)\,\|\,\mathcal N(0, I)\big)}_{\text{KL}}
    + \sum_{t=1}^{T} \underbrace{\frac{\eta}{2}\big(\mathrm{SNR}(t) - \mathrm{SNR}(t-1)\big)
      \mathbb E_{q(z_{t-1}\mid y)} \big\|\hat u_t(z_{t-1}, x) - u_y\big\|^2}_{\text{block } t}

(the paper writes the sum as :math:`\frac{T}{2}\eta\,\mathbb E_{t \sim U\{1..T\}}`; here every block is
trained on every batch, which is the same expectation). :math:`\hat p(y\mid z_T) = \operatorname{softmax}(W_{\text{out}} z_T + b)`
is a linear classifier (initialised as the Bayes classifier of :math:`q(z_T \mid y)` for the initial
embeddings: :math:`W_{\text{out}} = \sqrt{\bar\alpha_T} W_{\text{embed}} / (1 - \bar\alpha_T)`,
:math:`b_c = -\bar\alpha_T \|u_c\|^2 / (2(1 - \bar\alpha_T))`, then learnt); the KL term is
:math:`\tfrac12(\bar\alpha_0\|u_y\|^2 - E\bar\alpha_0 - E\log(1 - \bar\alpha_0))` (about 0 with this
schedule, since :math:`\bar\alpha_0 \approx 0`). The block input :math:`z_{t-1}` is sampled from
:math:`q` and **detached**, so block ``t``'s loss has a gradient only in block ``t``'s parameters and the
shared embedding matrix (which also gets the classifier and KL gradients); each block's loss is
back-propagated (through time, inside the block only) before the next block runs. Following the
paper's DT architecture, a block's prediction is a convex combination of the class embeddings,
:math:`\hat u_t = \operatorname{softmax}(\text{logits}_t)\,W_{\text{embed}}`.

**Spiking blocks**: a block is a small LIF network over ``[T_time, B, ...]`` built from ``[model]``
(``hidden``, neuron, surrogate, ...): the first layer's input current is
:math:`W_x x_\tau + W_z z_{t-1}`, the label embedding entering as a constant current at every time
step; the logits are a linear map of the last layer's firing rates. Surrogate gradients flow inside
a block only.

**Inference** (the paper's eq. for DT): :math:`z_0 \sim \mathcal N(0, I)`, then for ``t = 1..T``

.. math::
    z_t = a_t \hat u_t(z_{t-1}, x) + b_t z_{t-1} + \sqrt{c_t}\,\epsilon_t,\qquad
    a_t = \frac{\sqrt{\bar\alpha_t}(1 - \alpha_t)}{1 - \bar\alpha_{t-1}},\
    b_t = \frac{\sqrt{\alpha_t}(1 - \bar\alpha_t)}{1 - \bar\alpha_{t-1}},\
    c_t = \frac{(1 - \bar\alpha_t)(1 - \alpha_t)}{1 - \bar\alpha_{t-1}},

with :math:`\alpha_t = \bar\alpha_{t-1} / \bar\alpha_t` (the Gaussian posterior :math:`q(z_t \mid z_{t-1}, y)`
with :math:`u_y` replaced by the block's prediction), and the class scores are
:math:`W_{\text{out}} z_T + b` (``inference = "sample"``; its noise comes from a generator with a fixed
seed, so evaluating a model twice gives the same scores). ``inference = "mean"`` (the default) runs the
chain of posterior means instead: :math:`z_0 = 0` and no :math:`\sqrt{c_t}\,\epsilon_t` term. With few
blocks the sampled chain ends with much noise in :math:`z_T` (:math:`1 - \bar\alpha_T = 0.05` for
``T = 6``) and loses accuracy that the blocks have (see ``docs/guide/training.md``).

**What was checked against which source** (the paper's own text was not reachable from the stored
corpora; only its abstract and introduction, https://arxiv.org/html/2503.24322v1 and v2). The posterior
:math:`q(z_t\mid y)`, :math:`\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)`, the three-term objective
(eq. 8, with :math:`\frac{T}{2}\eta\,\mathbb E_{t\sim U\{1,T\}}[(\mathrm{SNR}(t)-\mathrm{SNR}(t-1))\,\|\hat u_t - u_y\|^2]`),
the inference update (eq. 3) and :math:`a_t, b_t, c_t` as written above (the paper writes
:math:`\alpha_{t-1}` for our :math:`\alpha_t = \bar\alpha_{t-1}/\bar\alpha_t`: its :math:`\bar\alpha_t = \prod_{s=t}^T \alpha_s`)
agree with a transcription of v1's equations (an earlier version of ``algorithm.md`` in the GitHub
repository ``vpuhoff/noprop-dt-mnist-pytorch``; a secondary source), and :math:`a_t, b_t, c_t` are proven to be the Gaussian conditional
of that Markov chain by ``tests/train/test_noprop.py``. That the DT variant uses a *fixed cosine*
schedule is stated by third-party implementations only; the index mapping :math:`k = T + 1 - t` and
:math:`s = 0.008` are ours (Nichol & Dhariwal's defaults). The per-block update on every batch
(instead of one sampled :math:`t`), the spiking blocks, the classifier initialisation and the ``"mean"``
inference are ours.

The strategy calls :func:`~spike.train.distributed.sync_gradients` once per batch, so it runs
unchanged under ``torchrun``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spike.core.config import ConfigError, ModelConfig
from spike.neurons.scan import check_sequence
from spike.synapses import Linear, SeqOutput, Sequential
from spike.train.distributed import sync_gradients, unwrap
from spike.train.strategy import StepResult

__all__ = ["cosine_alpha_bar", "NoiseSchedule", "noise_schedule", "DenoiseBlock", "NoPropNet", "NoProp",
           "noprop_backward", "block_loss", "head_loss", "COSINE_S", "INFERENCE"]

COSINE_S = 0.008  # the offset s of Nichol & Dhariwal's cosine schedule
_INFER_SEED = 0
INFERENCE = ("mean", "sample")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"[train] noprop_steps = {steps!r}: must be an integer >= 1 (T, the number of "
                          f"denoising blocks; a schedule with zero steps has no block to train)")


def cosine_alpha_bar(steps: int, s: float = COSINE_S) -> Tensor:
    r""":math:`\bar\alpha_t` for ``t = 0..T`` (float64, ``[T + 1]``, increasing; see the module docstring).

    Raises:
        ConfigError: ``steps < 1``.
    """
    _check_steps(steps)
    k = torch.arange(steps + 1, 0, -1, dtype=torch.float64) / (steps + 1)  # tau of z_t: (T + 1 - t) / (T + 1)

    def f(tau: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * (tau + s) / (1 + s)) ** 2

    abar = f(k) / f(torch.zeros((), dtype=torch.float64))
    return abar.clamp(0.0, 1.0)


class NoiseSchedule:
    """The fixed schedule of a ``T``-block chain: ``alpha_bar``, ``snr`` (``[T + 1]``), the SNR differences
    ``weight`` (``[T]``, block ``t`` at index ``t - 1``) and the inference coefficients ``a, b, c`` (``[T]``)."""

    def __init__(self, alpha_bar: Tensor):
        ab = alpha_bar.to(torch.float64)
        self.alpha_bar = ab
        self.snr = ab / (1.0 - ab)
        self.weight = self.snr[1:] - self.snr[:-1]
        prev, cur = ab[:-1], ab[1:]
        alpha = prev / cur  # alpha_t = abar_{t-1} / abar_t
        self.a = cur.sqrt() * (1.0 - alpha) / (1.0 - prev)
        self.b = alpha.sqrt() * (1.0 - cur) / (1.0 - prev)
        self.c = (1.0 - cur) * (1.0 - alpha) / (1.0 - prev)

    @property
    def steps(self) -> int:
        return int(self.weight.numel())


def noise_schedule(steps: int) -> NoiseSchedule:
    """The cosine :class:`NoiseSchedule` of ``steps`` blocks."""
    return NoiseSchedule(cosine_alpha_bar(steps))


class DenoiseBlock(nn.Module):
    """One spiking denoiser: ``(x [T, B, D], z [B, E], embed [C, E]) -> (u_hat [B, E], spikes [T, B, N])``.

    Args:
        x_proj: ``Linear(D, N_0)`` on the flattened input.
        body: the rest of the block (``[BN] -> neuron -> [dropout]`` then further hidden layers), a
            ``Sequential`` producing spikes ``[T, B, N]``.
        embed_dim: ``E``; n_classes: ``C``; width: ``N`` (last layer's neurons).
    """

    def __init__(self, x_proj: nn.Module, body: nn.Module, embed_dim: int, n_classes: int, width: int):
        super().__init__()
        self.x_proj, self.body = x_proj, body
        self.z_proj = nn.Linear(embed_dim, x_proj.out_features, bias=False)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor, z: Tensor, embed: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        current = self.x_proj(x) + self.z_proj(z)[None]  # [T, B, N_0]: z is a constant current over time
        spikes = self.body(current).out  # [T, B, N]
        logits = self.head(spikes.mean(0))  # [B, C] from firing rates
        return logits.softmax(-1) @ embed, spikes  # [B, E]: convex combination of the class embeddings


def _records(spikes: list[Tensor]) -> dict[str, tuple[Tensor, Tensor | None]]:
    return {f"block{i}": (s, None) for i, s in enumerate(spikes)}


class NoPropNet(nn.Module):
    """``T`` spiking denoise blocks, the class embedding ``embed [C, E]`` and a linear classifier on ``z_T``.

    Shape:
        ``forward(x [T_time, B, ...]) -> SeqOutput(out [1, B, C], (), records)``: the classifier's
        scores after the denoising chain (see the module docstring), as a one-step output sequence.
    """

    def __init__(self, blocks: nn.ModuleList, n_inputs: int, n_classes: int, embed_dim: int, eta: float,
                 inference: str = "mean"):
        super().__init__()
        if inference not in INFERENCE:
            raise ConfigError(f"[train] noprop_inference must be one of {INFERENCE}, got {inference!r}")
        self.inference = inference
        if n_classes < 2:
            raise ConfigError(f"noprop needs >= 2 classes, got {n_classes}")
        if not (eta > 0 and math.isfinite(eta)):
            raise ConfigError(f"[train] noprop_eta must be a positive number, got {eta!r}")
        if len(blocks) < 1:
            raise ConfigError("[train] noprop_steps must be >= 1 (one denoising block per step)")
        self.blocks = blocks
        self.n_inputs, self.n_classes, self.embed_dim, self.eta = n_inputs, n_classes, embed_dim, float(eta)
        self.embed = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.orthogonal_(self.embed)  # distinct, unit-norm class embeddings to start from
        self.classifier = nn.Linear(embed_dim, n_classes)
        self.schedule = noise_schedule(len(blocks))
        with torch.no_grad():  # start from the Bayes classifier of q(z_T | y) (equal priors), then learn
            ab = float(self.schedule.alpha_bar[-1])
            self.classifier.weight.copy_(self.embed * math.sqrt(ab) / (1.0 - ab))
            self.classifier.bias.copy_(-0.5 * ab * self.embed.pow(2).sum(-1) / (1.0 - ab))

    @property
    def steps(self) -> int:
        return len(self.blocks)

    def flat_input(self, x: Tensor) -> Tensor:
        """``[T, B, ...] -> [T, B, D]`` with a shape check."""
        check_sequence(x, "noprop input")
        flat = x.flatten(2)
        if flat.shape[-1] != self.n_inputs:
            raise ValueError(f"noprop input has {flat.shape[-1]} features per step, the network was built for "
                             f"{self.n_inputs}")
        return flat

    def coef(self, name: str, like: Tensor) -> Tensor:
        """A schedule vector (``alpha_bar``, ``snr``, ``weight``, ``a``, ``b``, ``c``) on ``like``'s device/dtype."""
        return getattr(self.schedule, name).to(device=like.device, dtype=like.dtype)

    def sample_q(self, u: Tensor, t: int, noise: Tensor) -> Tensor:
        r""":math:`z_t = \sqrt{\bar\alpha_t} u + \sqrt{1 - \bar\alpha_t}\,\epsilon` (a sample of :math:`q(z_t\mid y)`)."""
        ab = float(self.schedule.alpha_bar[t])
        return math.sqrt(ab) * u + math.sqrt(1.0 - ab) * noise

    def denoise(self, x: Tensor, generator: torch.Generator | None = None,
                inference: str | None = None) -> tuple[Tensor, list[Tensor]]:
        """Run the chain ``z_0 -> z_T`` for ``x [T, B, ...]``; returns ``(z_T [B, E], spikes per block)``.

        ``inference``: ``"sample"`` (noise from ``generator``) or ``"mean"`` (default: the net's own).
        """
        mode = inference or self.inference
        if mode not in INFERENCE:
            raise ValueError(f"inference must be one of {INFERENCE}, got {mode!r}")
        flat = self.flat_input(x)
        b = flat.shape[1]
        s = self.schedule

        def randn() -> Tensor:
            return torch.randn(b, self.embed_dim, generator=generator, device=flat.device, dtype=flat.dtype)

        z = randn() if mode == "sample" else flat.new_zeros(b, self.embed_dim)  # z_0 ~ N(0, I), or its mean
        spikes = []
        for i, block in enumerate(self.blocks):  # block t = i + 1
            u_hat, sp = block(flat, z, self.embed)
            z = float(s.a[i]) * u_hat + float(s.b[i]) * z
            if mode == "sample":
                z = z + math.sqrt(float(s.c[i])) * randn()
            spikes.append(sp)
        return z, spikes

    def forward(self, x: Tensor, state: Any = None, record: bool = False,  # type: ignore[override]
                inference: str | None = None) -> SeqOutput:
        g = torch.Generator(device=x.device).manual_seed(_INFER_SEED)  # same scores for the same input
        z, spikes = self.denoise(x, g, inference)
        scores = self.classifier(z)
        return SeqOutput(scores.unsqueeze(0), (), _records(spikes) if record else None)  # [1, B, C]


def block_loss(net: NoPropNet, t: int, flat: Tensor, y: Tensor, noise: Tensor | None = None) -> Tensor:
    r"""Block ``t``'s (1-based) loss :math:`\frac{\eta}{2}(\mathrm{SNR}(t) - \mathrm{SNR}(t-1))\,
    \mathbb E\|\hat u_t(z_{t-1}, x) - u_y\|^2` with a detached :math:`z_{t-1} \sim q(z_{t-1}\mid y)`.

    Args:
        flat: ``[T_time, B, D]`` (see :meth:`NoPropNet.flat_input`); y: ``[B]``; noise: ``[B, E]`` (drawn if
            ``None``).
    """
    u = net.embed[y]  # [B, E]
    if noise is None:
        noise = torch.randn_like(u)
    z = net.sample_q(u, t - 1, noise).detach()  # the block input carries no gradient
    u_hat, _ = net.blocks[t - 1](flat, z, net.embed)
    w = float(net.schedule.weight[t - 1])
    return 0.5 * net.eta * w * (u_hat - u).pow(2).sum(-1).mean()


def head_loss(net: NoPropNet, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(classifier cross-entropy on z_T ~ q(z_T | y), KL(q(z_0 | y) || N(0, I)))`` (batch means)."""
    u = net.embed[y]
    z_t = net.sample_q(u, net.steps, torch.randn_like(u))
    ce = F.cross_entropy(net.classifier(z_t), y)
    ab0 = float(net.schedule.alpha_bar[0])
    e = net.embed_dim
    kl = 0.5 * (ab0 * u.pow(2).sum(-1) - e * ab0 - e * math.log1p(-min(ab0, 1.0 - 1e-12))).mean()
    return ce, kl


def noprop_backward(net: NoPropNet, x: Tensor, y: Tensor) -> tuple[float, list[float]]:
    """Accumulate the NoProp-DT gradients of one batch into ``.grad``: each block's loss is back-propagated
    on its own (its graph freed before the next block runs), then the classifier + KL terms.

    Returns:
        ``(total loss, [block losses])``.
    """
    flat = net.flat_input(x)
    losses = []
    for t in range(1, net.steps + 1):
        loss = block_loss(net, t, flat, y)
        loss.backward()
        losses.append(float(loss.detach()))
    ce, kl = head_loss(net, y)
    (ce + kl).backward()
    return sum(losses) + float(ce.detach()) + float(kl.detach()), losses


@dataclass(frozen=True)
class NoProp:
    """NoProp-DT strategy; builds its :class:`NoPropNet` from a :class:`~spike.core.config.ModelConfig`.

    Args:
        steps: ``T``, the number of blocks (``[train] noprop_steps``).
        eta: :math:`\\eta`, the weight of the denoising terms (``noprop_eta``).
        embed_dim: ``E`` of the class embedding (``noprop_embed_dim``; 0: the number of classes).
        inference: ``"mean"`` or ``"sample"`` (``noprop_inference``, see the module docstring).
    """

    steps: int = 10
    eta: float = 0.1
    embed_dim: int = 0
    inference: str = "mean"
    name: str = "noprop"

    def __post_init__(self):
        _check_steps(self.steps)
        if not (self.eta > 0 and math.isfinite(self.eta)):
            raise ConfigError(f"[train] noprop_eta = {self.eta!r}: must be a positive number")
        if isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, int) or self.embed_dim < 0:
            raise ConfigError(f"[train] noprop_embed_dim = {self.embed_dim!r}: must be an integer >= 0 "
                              f"(0: the number of classes)")
        if self.inference not in INFERENCE:
            raise ConfigError(f"[train] noprop_inference = {self.inference!r}: must be one of {INFERENCE}")

    def build_model(self, m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> NoPropNet:
        from spike.train.forward_forward import build_ff_blocks

        if m.kind != "mlp":
            raise ConfigError(f"noprop feeds the flattened input and the label embedding to every block and needs "
                              f"[model] kind = 'mlp', got {m.kind!r}")
        n_in = math.prod(input_shape)
        e = self.embed_dim or n_classes
        blocks = nn.ModuleList()
        for _ in range(self.steps):
            stack, shapes = build_ff_blocks(m, input_shape)  # one fresh LIF stack per block
            layers = [layer for seq in stack for layer in seq]
            x_proj = layers[0]
            if not isinstance(x_proj, Linear):
                raise ConfigError("noprop: the first hidden layer must start with a Linear")
            x_proj.backend = "reference"  # dense matmul: ~2x faster than the sparse kernels for fwd + weight grad here
            blocks.append(DenoiseBlock(x_proj, Sequential(*layers[1:]), e, n_classes, shapes[-1][0]))
        return NoPropNet(blocks, n_in, n_classes, e, self.eta, self.inference)

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        net = unwrap(model)
        if not isinstance(net, NoPropNet):
            raise TypeError(f"noprop trains a NoPropNet (build it with NoProp.build_model), got {type(net).__name__}")
        optimizer.zero_grad(set_to_none=True)
        loss, _ = noprop_backward(net, x, y)
        sync_gradients(model)
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()
        with torch.no_grad():  # train accuracy from the real inference chain (no label used)
            z, _ = net.denoise(x)
            scores = net.classifier(z)
        return StepResult(loss, scores.unsqueeze(0))  # [1, B, C]
