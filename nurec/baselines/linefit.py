"""LineFit: the direction of a plane wave of light from a least-squares fit of hit times.

IceCube's improved LineFit (Aartsen et al., NIM A 736 (2014) 143): fit hit positions as
x_i = r + v t_i by weighted least squares (closed form per event), then down-weight
outliers with a Huber penalty by iteratively re-weighted least squares. The direction
of travel is v/|v|. Hits are first cleaned of isolated noise (nurec.baselines.cleaning)
and weighted by charge. Everything is vectorised over the batch with segment sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd

from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import (
    DetectorSetup,
    classical_info,
    detector_setup,
    finish,
    start_predictions,
    usable_hits,
)
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import MethodInfo
from nurec.ragged import RaggedEvents

# Huber scale of the improved LineFit [m] (NIM A 736 (2014) 143, Sec. 3.2: 153 m).
HUBER_SCALE_M = 153.0
HUBER_ITERATIONS = 8
CHARGE_WEIGHT_CAP_PE = 10.0  # a few bright sensors must not decide the fit alone


@dataclass
class LineFitResult:
    """Per-event LineFit output: direction (n, 3), velocity [m/ns], anchor (n, 3), hits used."""

    direction: np.ndarray
    speed_m_per_ns: np.ndarray
    anchor: np.ndarray
    anchor_time_ns: np.ndarray
    n_hits_used: np.ndarray


def linefit_flat(flat: RaggedEvents, huber_scale_m: float = HUBER_SCALE_M,
                 iterations: int = HUBER_ITERATIONS, charge_weighting: bool = True) -> LineFitResult:
    """Return the LineFit of every event of ``flat`` (NaN for events with < 2 distinct times)."""
    n = flat.n_events
    e = flat.event_index
    pos, t = flat["pos"], flat["t"]
    base_w = np.minimum(flat["charge"], CHARGE_WEIGHT_CAP_PE) if charge_weighting else np.ones_like(t)
    base_w = np.where(np.isfinite(base_w) & (base_w > 0), base_w, 0.0)
    weight = base_w.copy()
    velocity = np.full((n, 3), np.nan)
    anchor = np.full((n, 3), np.nan)
    t_mean = np.full(n, np.nan)
    for iteration in range(iterations + 1):
        w_sum = flat.segment_sum(weight)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean = flat.segment_sum(weight * t) / w_sum
            x_mean = flat.segment_sum(weight[:, None] * pos) / w_sum[:, None]
            dt = t - t_mean[e]
            var_t = flat.segment_sum(weight * dt**2)
            cov = flat.segment_sum((weight * dt)[:, None] * (pos - x_mean[e]))
            velocity = cov / var_t[:, None]
        anchor = x_mean
        if iteration == iterations:
            break
        residual = np.linalg.norm(pos - x_mean[e] - velocity[e] * dt[:, None], axis=1)
        huber = np.where(residual <= huber_scale_m, 1.0, huber_scale_m / np.maximum(residual, 1e-12))
        weight = base_w * np.where(np.isfinite(huber), huber, 0.0)
    speed = np.linalg.norm(velocity, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        direction = velocity / speed[:, None]
    return LineFitResult(direction, speed, anchor, t_mean, flat.counts)


class LineFit:
    """Improved LineFit as a registry method: cleaned, charge-weighted, Huber-robust."""

    name = "linefit"
    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, huber_scale_m: float = HUBER_SCALE_M,
                 iterations: int = HUBER_ITERATIONS, clean: bool = True):
        self.setup: DetectorSetup = detector_setup(detector)
        self.huber_scale_m = huber_scale_m
        self.iterations = iterations
        self.clean = clean

    def describe(self) -> MethodInfo:
        """Return what LineFit is: a direction estimate, valid on any detector."""
        return classical_info(self, ("direction",))

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event; direction from LineFit, energy NaN."""
        good_hits, reasons = usable_hits(events)
        table = start_predictions(events, self.name, reasons)
        if self.clean:
            good_hits = clean_hits(good_hits, self.setup.medium.name)
        result = linefit_flat(good_hits, self.huber_scale_m, self.iterations)
        table["dir_x"], table["dir_y"], table["dir_z"] = result.direction.T
        table["linefit_speed_m_per_ns"] = result.speed_m_per_ns
        table["n_hits_used"] = result.n_hits_used.astype(float)
        bad = (reasons == "") & ~np.all(np.isfinite(result.direction), axis=1)
        table.loc[bad, "fit_status"] = "failed: hits: no time spread among cleaned hits"
        return finish(table)


make_linefit = LineFit
"""Registry factory: LineFit(detector=..., huber_scale_m=..., iterations=..., clean=...)."""
