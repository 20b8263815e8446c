r"""Event-driven inference of feed-forward spiking networks on the CPU (numpy + numba, no torch).

A network is a tuple of plain-array layers (:class:`Dense` -- with optional integer synaptic delays --,
:class:`Conv`, :class:`Pool`, the neuron layers :class:`Neurons` (LIF / IF / LI), :class:`CubaNeurons`
(CUBA-LIF and its CUBA-LI readout) and :class:`AdLIFNeurons` (SE-adLIF), :class:`TimePad`) inside an
:class:`EventNetwork`, usually made from a trained torch model by
:func:`spike.inference.export.export_event_network`.

**Semantics** are those of the dense, clock-driven path (``spike.synapses.Sequential`` in ``eval()``
mode on binned inputs ``[T, B, ...]``): step ``t`` of every layer sees the input bin ``t``, and a
LIF neuron follows :func:`spike.neurons.lif.lif_step`

.. math::
    h_t = R\big(v_\text{rest} + \beta (v_{t-1} - v_\text{rest}),\ s_{t-1}\big)^{\text{deferred}}
          + g\,x_t,\qquad s_t = H(h_t - v_\text{th}),\qquad v_t = R(h_t, s_t)^{\text{immediate}}.

**Event-driven evaluation.** Only the work that changes something is done:

* an incoming event ``(i, value)`` adds ``value * W[:, i]`` (its weight column, or the kernel
  footprint of a convolution) to the targets' input; with a delay ``d`` the addition goes to the slot
  ``(t + d) mod (D + 1)`` of a per-layer ring buffer;
* only neurons that received input at ``t`` are updated and checked for threshold, plus the few whose
  *input-free* next step would reach threshold (flagged after their last update: e.g. a subtract
  reset that leaves ``v >= v_th``, or a deferred reset); layers with a bias, the readout layer and
  the two-variable neurons (:class:`CubaNeurons`, :class:`AdLIFNeurons`, :mod:`.kernels_neurons`:
  their current / adaptation couples to the membrane, so a silent step is no pure decay) are updated
  every step, by the reference step (:func:`~spike.neurons.cuba.cuba_step`,
  :func:`~spike.neurons.adlif.adlif_step`) operation for operation;
* decay is applied lazily: a neuron touched at ``t`` after its last update at ``u`` first replays
  the ``t - u - 1`` input-free steps;
* a layer all of whose neurons are touched at consecutive steps (full fan-out, bias) takes a
  branch-free vectorised update; a full-fan-out scatter adds eight weight rows per pass (more loads
  in flight, the same order of additions); the per-step helpers are inlined into the time loop (no
  call overhead, fewer array reference counts);
* a zero (pruned) weight is no synapse: it is not counted, and the delayed and convolutional
  scatters skip it (a dense row is added whole: that is faster than skipping down to ~0.5 % density).

**Exactness.** The lazy decay replays the skipped steps by repeated multiplication (stopping early
once the membrane reaches its fixed point ``v_rest``), never by ``beta ** k``: ``x * b**k`` and ``k``
rounded multiplications by ``b`` differ in the last bits, and a last-bit difference next to the
threshold flips a spike. Every neuron operation is done in the network's dtype in the order of
:func:`~spike.neurons.lif.lif_step` (or a value-identical form of it), so neuron dynamics are
bit-identical; within a step the synaptic terms are added in an order fixed by the events alone
(input channels ascending, then the order in which each layer emits its spikes), so the batch and the
streaming entry points agree bit for bit however the input is chunked. The one thing that cannot
be replayed is the order in which the dense path's matrix product adds the synaptic terms (blocked
BLAS / oneDNN, FMA, thread-dependent): spikes are therefore *bit-identical* whenever the synaptic sums
are exact (weights on a dyadic grid, e.g. quantised models; tested), and in ``float64`` the sums differ
by ~1e-16 relative, so spikes agree unless a membrane lands within ~1e-15 of threshold (tested exact
on random and on trained networks). With arbitrary ``float32`` weights an input current may differ in
its last bit (~1e-7 relative) and a neuron sitting that close to threshold can flip.

**Input convention.** One sample is a list of binned events ``(t_bin, channel[, count])``: channel is
the flat index into one step of the dense input (for a camera ``[P, H, W]``:
``channel = p*H*W + y*W + x``), ``count`` (default 1) the number of events of that channel in that bin
(the dense input value). Duplicate ``(t_bin, channel)`` pairs are summed. :func:`bin_events` makes this
from tonic's structured arrays with bins ``[t_start + k*dt, t_start + (k+1)*dt)``, the same windows as
``to_frame(..., time_window=dt, start_time=t_start)``.

Entry points: :func:`run` (a batch of samples, in parallel over samples with ``prange``) and
:class:`EventStream` (one sample, events fed as they arrive, output readable at any moment; a
``feed`` / ``advance`` that completes bins makes two numba calls -- CSR of those bins, the time
loop --, other calls only check and buffer; ``feed_events`` of integer event chunks validates and
bins them in one numba call, falling back to the Python reference checks, and their errors, for
anything unusual).
Both accept a :class:`StopRule` (per-step thresholds on the top-1/top-2 gap of the cumulative output)
and count synaptic operations (events x non-zero fan-out) and neuron updates per layer; the stream
stops where :func:`run` does however its input is chunked.

Files: :mod:`.layers` (layer types), :mod:`.program` (validation and the flat-array layout the kernels
read), :mod:`.inputs` (binning, CSR per step), :mod:`.kernels` (numba; the CUBA / adLIF step in
:mod:`.kernels_neurons`), :mod:`.batch` (:func:`run`,
:class:`StopRule`, :class:`RunResult`), :mod:`.stream` (:class:`EventStream`).
"""

from spike.events.network.batch import RunResult, StopRule, run
from spike.events.network.inputs import BinnedEvents, bin_events, to_dense
from spike.events.network.layers import (AdLIFNeurons, Conv, CubaNeurons, Dense, EventNetworkError, Layer, Neurons,
                                         Pool, TimePad)
from spike.events.network.program import EventNetwork, dense_ops
from spike.events.network.stream import EventStream

__all__ = ["Dense", "Conv", "Pool", "Neurons", "CubaNeurons", "AdLIFNeurons", "TimePad", "Layer", "EventNetwork", "StopRule",
           "BinnedEvents", "RunResult", "EventStream", "EventNetworkError", "bin_events", "run",
           "dense_ops", "to_dense"]


