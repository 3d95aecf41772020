"""Time over threshold (ToT): how KM3NeT's readout turns a PMT pulse's charge into a hit, and back.

KM3NeT records no charge, only how long each PMT pulse stays above a threshold. The pulse is
modelled as an instantaneous rise and an exponential decay whose height is proportional to
the charge q, so a pulse crosses a threshold of q_th photo-electrons back after

    ToT(q) = τ ln(q / q_th),     τ = ToT_spe / ln(1 / q_th),

which grows logarithmically with q and is fixed by two published numbers: the threshold,
typically 0.3 pe (km3net.org, detector readout), and the single-photo-electron ToT of
26.4 ns to which KM3NeT tunes every PMT's high voltage (B. Jung et al., arXiv:2108.11467).
Pulses below threshold make no hit; ToT is recorded in whole nanoseconds and saturates at
255 ns (one byte per hit in the KM3NeT DAQ hit format, Jpp ``JDAQHit``).

``charge_from_tot_pe`` inverts it; the converter of official files and the simulator both
use it, so converted and simulated hits carry charge on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ToTModel:
    """Threshold [pe], single-photo-electron ToT [ns] and saturation [ns] of a ToT readout."""

    threshold_pe: float = 0.3
    spe_tot_ns: float = 26.4
    saturation_ns: float = 255.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold_pe < 1.0:
            raise ValueError(f"ToT threshold_pe must lie in (0, 1) pe, got {self.threshold_pe}")
        if not 0.0 < self.spe_tot_ns < self.saturation_ns:
            raise ValueError(f"ToT spe_tot_ns must lie in (0, saturation_ns), got {self.spe_tot_ns}")

    @property
    def decay_ns(self) -> float:
        """Return the pulse's decay time τ [ns] that gives the single-pe ToT at the threshold."""
        return self.spe_tot_ns / float(np.log(1.0 / self.threshold_pe))


def tot_from_charge_ns(charge_pe: np.ndarray, model: ToTModel) -> np.ndarray:
    """Return the recorded ToT [whole ns, ≤ saturation] of pulses of ``charge_pe``; 0 where below threshold."""
    charge = np.asarray(charge_pe, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tot = model.decay_ns * np.log(charge / model.threshold_pe)
    recorded = np.clip(np.round(tot), 1.0, model.saturation_ns)
    return np.where(charge > model.threshold_pe, recorded, 0.0)


def charge_from_tot_pe(tot_ns: np.ndarray, model: ToTModel) -> np.ndarray:
    """Return the charge estimate [pe] of hits with ``tot_ns`` (a lower bound for saturated hits)."""
    tot = np.clip(np.asarray(tot_ns, dtype=float), 0.0, model.saturation_ns)
    return model.threshold_pe * np.exp(tot / model.decay_ns)
