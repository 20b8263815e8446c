r"""Per-operation energy costs of devices, kept as data with their source.

Energy of one inference (per sample), from the counts of :mod:`spike.energy.counter`:

.. math::
    E_\text{SNN} = E_\text{AC}\,N_\text{AC} + E_\text{MAC}\,N_\text{MAC}
                 + E_\text{MAC}\,N_\text{update} + E_\text{AC}\,N_\text{spike}
                 \;[+\; E_\text{mem}]

* :math:`N_\text{AC}` / :math:`N_\text{MAC}`: synaptic operations with binary (spike) / real-valued inputs;
* :math:`N_\text{update}`: neuron state updates (one leak multiply + one integrate add each, costed as a MAC);
* :math:`N_\text{spike}`: emitted spikes (one add each for the reset);
* optional memory term (an upper bound, no data reuse): every synaptic operation fetches its weight
  and every neuron update reads and writes its state from on-chip SRAM,

  .. math:: E_\text{mem} = \tfrac{b}{64} E_\text{SRAM,64b}\,(N_\text{AC} + N_\text{MAC} + 2 N_\text{update}).

The non-spiking ANN with the same layers does one dense pass: :math:`E_\text{ANN} = E_\text{MAC}\,N_\text{dense,1 step}`
(+ :math:`\tfrac{b}{64} E_\text{SRAM,64b} (N_\text{dense,1 step} + 2 N_\text{neurons})` with memory).

All numbers of :data:`PROFILES` are from M. Horowitz, "1.1 Computing's energy problem (and what we
can do about it)", ISSCC 2014, doi:10.1109/ISSCC.2014.6757323 (45 nm CMOS, 0.9 V): add / multiply
energies of Fig. 1.1.9 and 64-bit SRAM cache reads (8 KB: 10 pJ, 32 KB: 20 pJ, 1 MB: 100 pJ).
A MAC is one multiply plus one add. Add a profile only with a citable source.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeviceProfile", "PROFILES", "get_profile", "HOROWITZ_2014", "SRAM_64BIT_PJ"]

HOROWITZ_2014 = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
                 "doi:10.1109/ISSCC.2014.6757323, 45 nm CMOS")

SRAM_64BIT_PJ = {"8KB": 10.0, "32KB": 20.0, "1MB": 100.0}
"""Energy of one 64-bit read from an SRAM cache of the given size, 45 nm (Horowitz 2014)."""


@dataclass(frozen=True)
class DeviceProfile:
    """Energy per operation in picojoules, with its source.

    Args:
        name: registry key.
        add_pj: one addition (an accumulate, AC).
        mult_pj: one multiplication.
        bits: operand width (scales the memory term).
        sram_64bit_pj: energy of one 64-bit SRAM read used by the optional memory term.
        source: citation.
    """

    name: str
    add_pj: float
    mult_pj: float
    bits: int
    sram_64bit_pj: float
    source: str

    @property
    def ac_pj(self) -> float:
        return self.add_pj

    @property
    def mac_pj(self) -> float:
        return round(self.mult_pj + self.add_pj, 9)

    @property
    def mem_access_pj(self) -> float:
        """One operand read from SRAM (``bits / 64`` of a 64-bit read)."""
        return round(self.sram_64bit_pj * self.bits / 64.0, 9)

    def to_dict(self) -> dict:
        return {"name": self.name, "ac_pj": self.ac_pj, "mac_pj": self.mac_pj, "add_pj": self.add_pj,
                "mult_pj": self.mult_pj, "bits": self.bits, "mem_access_pj": self.mem_access_pj,
                "source": self.source}


PROFILES: dict[str, DeviceProfile] = {
    p.name: p for p in (
        # 32-bit float: add 0.9 pJ, mult 3.7 pJ -> MAC 4.6 pJ
        DeviceProfile("cmos45_fp32", add_pj=0.9, mult_pj=3.7, bits=32, sram_64bit_pj=SRAM_64BIT_PJ["32KB"],
                      source=HOROWITZ_2014),
        # 16-bit float: add 0.4 pJ, mult 1.1 pJ
        DeviceProfile("cmos45_fp16", add_pj=0.4, mult_pj=1.1, bits=16, sram_64bit_pj=SRAM_64BIT_PJ["32KB"],
                      source=HOROWITZ_2014),
        # 32-bit int: add 0.1 pJ, mult 3.1 pJ
        DeviceProfile("cmos45_int32", add_pj=0.1, mult_pj=3.1, bits=32, sram_64bit_pj=SRAM_64BIT_PJ["32KB"],
                      source=HOROWITZ_2014),
        # 8-bit int: add 0.03 pJ, mult 0.2 pJ
        DeviceProfile("cmos45_int8", add_pj=0.03, mult_pj=0.2, bits=8, sram_64bit_pj=SRAM_64BIT_PJ["32KB"],
                      source=HOROWITZ_2014),
    )
}


def get_profile(name: str | DeviceProfile) -> DeviceProfile:
    """A profile by name (or the profile itself)."""
    if isinstance(name, DeviceProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown energy profile {name!r}; known: {sorted(PROFILES)}") from None
