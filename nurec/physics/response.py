"""Sensor and readout response of the detector families (shared by simulation and reconstruction)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorResponse:
    """Sensor and readout properties of a detector family.

    ``pmt_area_m2`` is the effective area at normal incidence (photocathode × quantum
    and collection efficiency), tuned so that a 1 TeV cascade in IceCube yields
    ~100-200 photo-electrons (HESE: 6000 pe ≈ 30 TeV deposited, PRL 113 (2014) 101101).
    """

    pmt_area_m2: float
    acceptance_exponent: float
    jitter_ns: float
    noise_rate_hz: float
    spe_charge_sigma: float
    pulse_merge_window_ns: float
    readout_before_ns: float
    readout_after_ns: float
    trigger: str
    coincidence_window_ns: float
    coincidence_floor_span: int
    trigger_threshold: int
    max_pe_per_sensor: int = 64


# IceCube: 10" PMT facing down, TTS ~2 ns, ~500 Hz dark rate per DOM, HLC = neighbour or
# next-to-neighbour DOM on the string within ±1 µs, SMT8 = 8 HLC DOMs
# (JINST 12 (2017) P03012). Readout: -4 µs/+6 µs around the light.
ICECUBE_RESPONSE = DetectorResponse(
    pmt_area_m2=0.02,
    acceptance_exponent=1.5,
    jitter_ns=2.0,
    noise_rate_hz=500.0,
    spe_charge_sigma=0.3,
    pulse_merge_window_ns=10.0,
    readout_before_ns=4000.0,
    readout_after_ns=6000.0,
    trigger="smt",
    coincidence_window_ns=1000.0,
    coincidence_floor_span=2,
    trigger_threshold=8,
)

# KM3NeT: 31 3" PMTs per DOM, TTS ~2 ns sigma, 5-7 kHz per PMT from 40K decays and dark
# counts, L1 = two hits on one DOM within 10 ns (KM3NeT, Eur. Phys. J. C 82 (2022) 26).
# Trigger here: at least 4 DOMs with an L1 coincidence (a simplified 3D trigger).
KM3NET_RESPONSE = DetectorResponse(
    pmt_area_m2=0.002,
    acceptance_exponent=2.0,
    jitter_ns=2.0,
    noise_rate_hz=6000.0,
    spe_charge_sigma=0.3,
    pulse_merge_window_ns=25.0,
    readout_before_ns=500.0,
    readout_after_ns=500.0,
    trigger="l1",
    coincidence_window_ns=10.0,
    coincidence_floor_span=0,
    trigger_threshold=4,
)

RESPONSES = {"icecube": ICECUBE_RESPONSE, "km3net": KM3NET_RESPONSE}
