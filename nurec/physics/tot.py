"""Time over threshold (ToT): how KM3NeT's readout turns a PMT pulse's charge into a hit, and back.

KM3NeT records no charge, only how long each PMT pulse stays above a threshold. Small pulses
are modelled as Gaussian in time, with a height proportional to the charge q, so a pulse of
q photo-electrons stays above a threshold of q_th for

    ToT(q) = 2σ √(2 ln(q / q_th)),     σ = ToT_spe / (2 √(2 ln(1 / q_th))).

This grows ever more slowly with q, and it cannot describe large pulses, whose ToT keeps
growing as the pulse shape widens. So above the charge where its slope falls to
``linear_slope_ns_per_pe``, ToT grows linearly in q, continuing smoothly, until the one-byte
ToT of the KM3NeT DAQ hit format saturates at 255 ns (Jpp ``JDAQHit``).

Published inputs: the threshold, typically 0.3 pe (km3net.org, detector readout), and the
single-photo-electron ToT of 26.4 ns to which KM3NeT tunes every PMT's high voltage
(B. Jung et al., arXiv:2108.11467). Checked against official MC (km3net-testdata, hits
before the light, i.e. single photo-electrons, `python benchmarks/bench_fidelity.py`,
"ToT quantiles"): the official single-pe ToT has a sharp upper edge (90% below 29 ns,
99% below 32 ns), which the Gaussian pulse reproduces and an exponential pulse does not.
The linear slope (7 ns/pe) is an assumed nominal value, not a published one; the same
benchmark prints the multi-photo-electron ToT quantiles it governs.

``charge_from_tot_pe`` inverts the model; the converter of official files and the simulator
both use it, so converted and simulated hits carry charge on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import brentq


@dataclass(frozen=True)
class ToTModel:
    """Threshold [pe], single-photo-electron ToT [ns], large-pulse slope [ns/pe] and saturation [ns]."""

    threshold_pe: float = 0.3
    spe_tot_ns: float = 26.4
    linear_slope_ns_per_pe: float = 7.0
    saturation_ns: float = 255.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold_pe < 1.0:
            raise ValueError(f"ToT threshold_pe must lie in (0, 1) pe, got {self.threshold_pe}")
        if not 0.0 < self.spe_tot_ns < self.saturation_ns:
            raise ValueError(f"ToT spe_tot_ns must lie in (0, saturation_ns), got {self.spe_tot_ns}")
        if self.linear_slope_ns_per_pe <= 0:
            raise ValueError(f"ToT linear_slope_ns_per_pe must be > 0, got {self.linear_slope_ns_per_pe}")

    @property
    def pulse_sigma_ns(self) -> float:
        """Return the Gaussian pulse width σ [ns] that gives the single-pe ToT at the threshold."""
        return self.spe_tot_ns / (2.0 * float(np.sqrt(2.0 * np.log(1.0 / self.threshold_pe))))

    @cached_property
    def linear_from_pe(self) -> float:
        """Return the charge [pe] above which ToT grows linearly (where the Gaussian ToT's slope equals it)."""
        sigma, threshold, slope = self.pulse_sigma_ns, self.threshold_pe, self.linear_slope_ns_per_pe

        def excess(q: float) -> float:  # dToT/dq of the Gaussian pulse minus the linear slope
            return 2.0 * sigma / (q * np.sqrt(2.0 * np.log(q / threshold))) - slope

        return float(brentq(excess, threshold * (1.0 + 1e-9), 1e6))

    @cached_property
    def linear_from_tot_ns(self) -> float:
        """Return the ToT [ns] at ``linear_from_pe``, where the linear regime starts."""
        return float(_gaussian_tot_ns(np.array(self.linear_from_pe), self))


def _gaussian_tot_ns(charge_pe: np.ndarray, model: ToTModel) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * model.pulse_sigma_ns * np.sqrt(2.0 * np.log(np.maximum(charge_pe, model.threshold_pe)
                                                                   / model.threshold_pe))


def tot_from_charge_ns(charge_pe: np.ndarray, model: ToTModel) -> np.ndarray:
    """Return the recorded ToT [whole ns, ≤ saturation] of pulses of ``charge_pe``; 0 where below threshold."""
    charge = np.asarray(charge_pe, dtype=float)
    knee, knee_tot = model.linear_from_pe, model.linear_from_tot_ns
    tot = np.where(charge <= knee, _gaussian_tot_ns(charge, model),
                   knee_tot + model.linear_slope_ns_per_pe * (charge - knee))
    recorded = np.clip(np.round(tot), 1.0, model.saturation_ns)
    return np.where(charge > model.threshold_pe, recorded, 0.0)


def charge_from_tot_pe(tot_ns: np.ndarray, model: ToTModel) -> np.ndarray:
    """Return the charge estimate [pe] of hits with ``tot_ns`` (a lower bound for saturated hits)."""
    tot = np.clip(np.asarray(tot_ns, dtype=float), 0.0, model.saturation_ns)
    knee, knee_tot = model.linear_from_pe, model.linear_from_tot_ns
    gaussian = model.threshold_pe * np.exp(0.5 * (tot / (2.0 * model.pulse_sigma_ns)) ** 2)
    return np.where(tot <= knee_tot, gaussian, knee + (tot - knee_tot) / model.linear_slope_ns_per_pe)
