"""Edges of the neuron tensor API: no time steps, non-finite initial states, non-finite parameters.

Each bad call must raise one ``ValueError`` that names the tensor or parameter; good calls at the
same edges (one step, a finite state, huge but finite values) must still run.
"""

from __future__ import annotations

import math

import pytest
import torch

from spike.core.registry import BackendError
from spike.neurons import IF, LI, LIF, LIFParams, LIFState, UltraDLIF, UltraLIF, discretize
from spike.neurons import lif as lif_fn
from spike.neurons import ultralif as ultra_fn
from spike.neurons.ultralif import UltraState

try:
    import numba  # noqa: F401
    BACKENDS = ["auto", "reference", "numba"]
except ImportError:  # pragma: no cover
    BACKENDS = ["auto", "reference"]

MODULES = {
    "LIF": lambda b: LIF(tau=5.0, backend=b),
    "IF": lambda b: IF(backend=b),
    "LI": lambda b: LI(tau=5.0, backend=b),
}
ULTRA = {"UltraLIF": UltraLIF, "UltraDLIF": UltraDLIF}


# --- T = 0 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", sorted(MODULES))
def test_zero_time_steps_is_a_clear_error(kind, backend):
    with pytest.raises(ValueError, match=rf"{kind} input has T = 0 time steps; expected \[T >= 1, B, \.\.\.\]"
                                         r".*\(0, 2, 3\)"):
        MODULES[kind](backend)(torch.zeros(0, 2, 3))


@pytest.mark.parametrize("kind", sorted(ULTRA))
def test_zero_time_steps_ultra(kind):
    with pytest.raises(ValueError, match=rf"{kind} input has T = 0 time steps"):
        ULTRA[kind]()(torch.zeros(0, 2, 3))


def test_zero_time_steps_in_the_pure_functions():
    p = discretize(LIFParams())
    with pytest.raises(ValueError, match=r"x has T = 0 time steps"):
        lif_fn.multi_step(torch.zeros(0, 2, 3), None, p)
    with pytest.raises(ValueError, match=r"x has T = 0 time steps"):
        ultra_fn.multi_step(torch.zeros(0, 2, 3), None, ultra_fn.UltraParams(eps=1.0))


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba not installed")
def test_numba_kernel_called_directly_refuses_zero_steps():
    from spike.backends import numba_lif

    with pytest.raises(BackendError, match="T >= 1"):
        numba_lif.multi_step(torch.zeros(0, 2, 3), None, discretize(LIFParams()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_time_step_still_runs(backend):
    out = LIF(tau=5.0, backend=backend)(torch.full((1, 2, 3), 2.0), record=True)
    assert out.spikes.shape == (1, 2, 3) and bool((out.spikes == 1).all())


# --- initial state ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field", ["v", "s"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_initial_state_names_the_field(backend, field, bad):
    st = {"v": torch.zeros(2, 3), "s": torch.zeros(2, 3)}
    st[field][1, 2] = bad
    with pytest.raises(ValueError, match=rf"state\.{field} contains 1 NaN/Inf value"):
        LIF(tau=5.0, backend=backend)(torch.zeros(4, 2, 3), LIFState(**st))


@pytest.mark.parametrize("kind", sorted(ULTRA))
def test_non_finite_initial_state_ultra(kind):
    st = UltraState(torch.zeros(2, 5), torch.zeros(2, 5))
    st.v[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"state\.v contains 1 NaN/Inf"):
        ULTRA[kind]()(torch.zeros(3, 2, 5), st)


def test_state_spikes_with_wrong_shape_are_named():
    bad = LIFState(torch.zeros(2, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"state\.s has shape \(1, 3\).*\(2, 3\)"):
        LIF(backend="reference")(torch.zeros(4, 2, 3), bad)


def test_input_and_state_errors_name_the_right_tensor():
    x = torch.zeros(4, 2, 3)
    x[1, 0, 0] = math.nan
    st = LIFState(torch.full((2, 3), math.inf), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="LIF input contains 1 NaN/Inf"):  # the input is checked first
        LIF(backend="reference")(x, st)
    with pytest.raises(ValueError, match=r"state\.v contains 6 NaN/Inf"):
        LIF(backend="reference")(torch.zeros(4, 2, 3), st)


@pytest.mark.parametrize("backend", BACKENDS)
def test_finite_state_at_rest_equals_no_state(backend):
    """A user state equal to rest must give exactly the run from ``state=None``."""
    torch.manual_seed(0)
    x = torch.rand(12, 3, 4) * 0.6
    lif = LIF(tau=4.0, v_rest=0.25, backend=backend)
    rest = LIFState(torch.full((3, 4), 0.25), torch.zeros(3, 4))
    a, b = lif(x, record=True), lif(x, rest, record=True)
    assert torch.equal(a.spikes, b.spikes) and torch.equal(a.v, b.v)
    assert a.spikes.sum() > 0  # the comparison is not between two silent runs


def test_huge_finite_values_whose_sum_overflows_are_accepted():
    """The one-reduction check must not mistake an overflowing sum for an Inf."""
    x = torch.full((3, 2, 4), 3.0e38)  # each finite, their float32 sum is inf
    st = LIFState(torch.full((2, 4), -3.0e38), torch.zeros(2, 4))
    out = LIF(backend="reference", reset="to_value")(x, st)
    assert out.spikes.shape == x.shape


# --- parameters -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v_th", "v_reset", "v_rest"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("cls", [LIF, IF, LI])
def test_non_finite_voltage_parameters_are_rejected_at_construction(cls, name, bad):
    with pytest.raises(ValueError, match=rf"{name} must be finite, got {bad!r}"):
        cls(**{name: bad})


@pytest.mark.parametrize("kw,match", [
    (dict(tau=math.nan), "tau must be > 0"),
    (dict(tau=-math.inf), "tau must be > 0"),
    (dict(dt=math.nan), "dt must be a positive finite"),
    (dict(dt=math.inf), "dt must be a positive finite"),
])
def test_non_finite_time_constants_are_rejected(kw, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kw)


def test_non_number_parameter_is_named():
    with pytest.raises(ValueError, match="v_reset must be finite, got 'zero'"):
        LIFParams(v_reset="zero")


@pytest.mark.parametrize("kw,match", [
    (dict(v_th=math.nan), "v_th must be finite"),
    (dict(tau=math.nan), "tau"),
    (dict(eps=math.inf), "eps"),
])
def test_ultra_rejects_non_finite_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        UltraLIF(**kw)
