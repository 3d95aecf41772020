"""Sensor and readout response of the detector families (shared by simulation and reconstruction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from nurec.physics.tot import ToTModel


@dataclass(frozen=True)
class DetectorResponse:
    """Sensor and readout properties of a detector family.

    The sensor itself (effective area, quantum efficiency, angular acceptance) is the photon
    tables' (nurec.physics.sensors); a sensor's relative efficiency is the geometry's.

    The optical background is ``noise_rate_hz`` of uncorrelated singles per sensor (spread
    over sensors by a log-normal of relative width ``noise_rate_spread``; a fraction
    ``dead_sensor_fraction`` of sensors records nothing) plus ``coincidence_rate_hz`` genuine
    two-hit coincidences per module (⁴⁰K decays seen by two PMTs of one module). The readout
    window (``readout_window``) is either ``readout_before_ns``/``readout_after_ns`` around the
    light ("light") or the span of the light's local coincidences widened on both sides by the
    time light needs to cross the detector ("trigger", JTE-like; ``snapshot_before_ns`` and
    ``snapshot_after_ns`` replace that margin where a production is known to use another). ``tot_threshold_pe`` > 0
    switches to a time-over-threshold readout (nurec.physics.tot): pulses below the threshold
    are lost and the charge is the ToT's estimate. ``arrival_delays`` draws the scattering delay of
    each photo-electron from the Pandel pdf or from the medium's photon tables
    (nurec.physics.tables).
    """

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
    trigger_slack_ns: float = 20.0
    subarray_trigger_threshold: int = 0
    coincidence_rate_hz: float = 0.0
    noise_rate_spread: float = 0.0
    dead_sensor_fraction: float = 0.0
    readout_window: str = "light"
    arrival_delays: str = "pandel"
    spe_charge_quantiles: tuple[float, ...] = ()
    snapshot_before_ns: float | None = None
    snapshot_after_ns: float | None = None
    tot_threshold_pe: float = 0.0
    tot_spe_ns: float = 26.4
    tot_linear_slope_ns_per_pe: float = 7.0
    tot_saturation_ns: float = 255.0

    def __post_init__(self) -> None:
        if self.arrival_delays not in ("pandel", "tables"):
            raise ValueError(f"arrival_delays must be 'pandel' or 'tables', got '{self.arrival_delays}'")
        if self.readout_window not in ("light", "trigger"):
            raise ValueError(f"readout_window must be 'light' or 'trigger', got '{self.readout_window}'")
        if not 0.0 <= self.dead_sensor_fraction < 1.0:
            raise ValueError(f"dead_sensor_fraction must lie in [0, 1), got {self.dead_sensor_fraction}")
        for name in ("noise_rate_hz", "coincidence_rate_hz", "noise_rate_spread"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        self.tot_model()  # validates the ToT settings
        # Settings from JSON arrive as lists; keep a tuple so the response stays hashable.
        object.__setattr__(self, "spe_charge_quantiles", tuple(float(q) for q in self.spe_charge_quantiles))
        quantiles = np.asarray(self.spe_charge_quantiles, dtype=float)
        if len(quantiles) and (len(quantiles) < 2 or np.any(np.diff(quantiles) < 0) or quantiles[0] <= 0):
            raise ValueError("spe_charge_quantiles must be ≥ 2 positive, non-decreasing charges [pe]")

    def sample_spe_charge(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` single-photo-electron charges [pe]: Gaussian(1, ``spe_charge_sigma``) floored at
        0.05, or, where ``spe_charge_quantiles`` gives a measured spectrum (its quantiles at evenly
        spaced probabilities), drawn from that."""
        if not self.spe_charge_quantiles:
            return np.maximum(rng.normal(1.0, self.spe_charge_sigma, n), 0.05)
        quantiles = np.asarray(self.spe_charge_quantiles, dtype=float)
        return np.interp(rng.random(n), np.linspace(0.0, 1.0, len(quantiles)), quantiles)

    def spe_charge_mean(self) -> float:
        """Return the mean of the single-photo-electron charge distribution of ``sample_spe_charge`` [pe]."""
        if not self.spe_charge_quantiles:
            # E[max(X, c)] for X ~ Gaussian(1, σ) floored at c = 0.05.
            sigma, floor = self.spe_charge_sigma, 0.05
            if sigma <= 0:
                return 1.0
            a = (floor - 1.0) / sigma
            return float(floor * special.ndtr(a) + 1.0 * (1.0 - special.ndtr(a))
                         + sigma * np.exp(-0.5 * a * a) / np.sqrt(2.0 * np.pi))
        quantiles = np.asarray(self.spe_charge_quantiles, dtype=float)
        return float(np.mean(0.5 * (quantiles[1:] + quantiles[:-1])))

    def sample_charge(self, represents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return the charge [pe] of photo-electrons each standing for ``represents`` real ones.

        One single-pe draw q each; a photo-electron standing for s > 1 carries s·m + √s·(q - m)
        (m the spectrum's mean), so a capped sensor's total charge keeps the mean and the spread
        of the sum of all its photo-electrons instead of growing s times too wide.
        """
        represents = np.asarray(represents, dtype=float)
        single = self.sample_spe_charge(len(represents), rng)
        mean = self.spe_charge_mean()
        many = represents * mean + np.sqrt(represents) * (single - mean)
        return np.where(represents == 1.0, single, np.maximum(many, 0.0))

    def tot_model(self) -> ToTModel | None:
        """Return the ToT readout model, or None when the readout records charge."""
        if self.tot_threshold_pe <= 0:
            return None
        return ToTModel(self.tot_threshold_pe, self.tot_spe_ns, self.tot_linear_slope_ns_per_pe,
                        self.tot_saturation_ns)


# IceCube: 10" PMT facing down, TTS ~2 ns, ~500 Hz dark rate per DOM, HLC = neighbour or
# next-to-neighbour DOM on the string within ±1 µs, SMT8 = 8 HLC DOMs, and SMT3 = 3 HLC DOMs
# in the DeepCore subarray (JINST 12 (2017) P03012). Readout: -4 µs/+6 µs around the light.
ICECUBE_RESPONSE = DetectorResponse(
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
    subarray_trigger_threshold=3,
)

# KM3NeT: 31 3" PMTs per DOM, TTS ~2 ns sigma, L1 = two hits on one DOM within 10 ns
# (KM3NeT, Eur. Phys. J. C 82 (2022) 26). Trigger ("3d", sim.trigger): at least 4 L1s on
# distinct DOMs that are pairwise causally connected (|Δt| ≤ |Δx|/c_water + 20 ns), the
# condition of KM3NeT's 3D trigger (arXiv:2506.05881), with a greedy clique search, looked
# for while the event's light forms coincidences (sim.detector.trigger_windows).
# Sensor: Jpp's PMT (nurec.physics.pmt), carried by the water photon tables.
# Background: 40K decays and dark counts give 5-8 kHz per PMT (km3net.org, detector
# readout); measured in official MC (km3net-testdata, `python benchmarks/bench_fidelity.py`,
# section "Optical background"): 4.9-6.4 kHz singles per PMT and 620-760 Hz of genuine
# same-DOM coincidences per DOM in the three files with a nominal background (10.8 kHz and no
# measurable excess in the run-by-run ORCA6 sample). Per-PMT spread and dead PMTs: upper
# bounds from the same measurement (var/mean of per-PMT counts 1.12 at 2.8 hits per PMT,
# so relative spread ≤ 0.2; 0.8% more never-hit PMTs than Poisson allows).
# Single-photo-electron charge spread 0.4: official hits before the light (single pe), their
# ToT turned into charge with the file's own single-pe ToT, spread 0.36-0.52 above the median
# and 0.40-0.45 below it (integer ToT makes the estimate coarse; bench_fidelity, ToT table).
# Readout: ToT with a 0.3 pe threshold (nurec.physics.tot); the event keeps every hit from
# the first to the last triggering coincidence widened by the detector's light-crossing
# time, as JTE's snapshot does.
KM3NET_RESPONSE = DetectorResponse(
    jitter_ns=2.0,
    noise_rate_hz=6000.0,
    spe_charge_sigma=0.4,
    pulse_merge_window_ns=25.0,
    readout_before_ns=500.0,
    readout_after_ns=500.0,
    trigger="3d",
    coincidence_window_ns=10.0,
    coincidence_floor_span=0,
    trigger_threshold=4,
    coincidence_rate_hz=680.0,
    noise_rate_spread=0.2,
    dead_sensor_fraction=0.01,
    readout_window="trigger",
    tot_threshold_pe=0.3,
    arrival_delays="tables",
)

RESPONSES = {"icecube": ICECUBE_RESPONSE, "km3net": KM3NET_RESPONSE}
