"""Likelihood track fit (SPE and MPE) with the simulator's own arrival-time pdf.

For an infinite muon track (anchor point r, time t0 at r, direction d) every hit has a
time residual t_res = t_hit - t0 - t_direct(sensor) (nurec.physics.timing.track_geometry)
and a photon path d_i. The SPE likelihood of the first pulse on each sensor is

    log L = Σ_i log( p(t_res,i | d_i) + ε ),

with p the Pandel pdf convolved with the PMT jitter (nurec.physics.timing.
log_arrival_time_pdf, the pdf the simulator samples from) and ε the sensor noise rate
[1/ns] — a noise hit has a flat time density, so a noise hit costs at most log ε.
The MPE variant uses the pdf of the first of N photo-electrons, N = the sensor's charge:
p₁(t) = N p(t) (1 - F(t))^{N-1}, with F the Pandel cdf (a regularised incomplete gamma;
the jitter is neglected in F).

The 5 parameters are two tangent-plane angles of the direction around a reference
direction, two anchor offsets in the plane perpendicular to it, and t0. The fit is
seeded by LineFit and restarted around the best fit so far from directions
``restart_angle_deg`` away (the "iterative" fit); the best of all is kept. The angular
uncertainty is the paraboloid sigma from a finite-difference Hessian at the optimum.
Events are fitted in parallel processes (nurec.baselines.parallel).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd
from scipy import optimize

from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import (
    DetectorSetup,
    classical_info,
    detector_setup,
    finish,
    opening_angle_deg,
    orthonormal_pair,
    start_predictions,
    usable_hits,
)
from nurec.baselines.linefit import linefit_flat
from nurec.baselines.parallel import map_chunks, split_evenly
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import MethodInfo
from nurec.physics.medium import Medium
from nurec.physics.timing import log_arrival_time_pdf, log_first_arrival_pdf, track_geometry
from nurec.ragged import RaggedEvents

# Parameter scales: the optimiser works in units of (rad, rad, 10 m, 10 m, 10 ns).
_SCALE = np.array([1.0, 1.0, 10.0, 10.0, 10.0])
_HESSIAN_STEP = np.array([0.004, 0.004, 0.1, 0.1, 0.1])


@dataclass(frozen=True)
class TrackFitSettings:
    """What one track fit needs: medium, jitter, noise floor and the restart scheme."""

    medium: Medium
    jitter_ns: float
    noise_floor_per_ns: float
    mpe: bool = False
    n_restarts: int = 4
    restart_angle_deg: float = 25.0
    seed: int = 0
    max_iterations: int = 200


def track_log_likelihood_terms(
    pos: np.ndarray, t: np.ndarray, n_pe: np.ndarray, anchor: np.ndarray, t0: float,
    direction: np.ndarray, settings: TrackFitSettings,
) -> np.ndarray:
    """Return the per-hit log-likelihood terms of a track hypothesis (SPE or MPE)."""
    geo = track_geometry(pos, anchor, direction, settings.medium)
    residual = t - t0 - geo["delay_ns"]
    distance = geo["distance_m"]
    if settings.mpe:
        log_p = log_first_arrival_pdf(residual, distance, n_pe, settings.medium, settings.jitter_ns)
    else:
        log_p = log_arrival_time_pdf(residual, distance, settings.medium, settings.jitter_ns)
    # Far outside the pdf's range the special functions can overflow; such a hit is noise-like.
    log_p = np.where(np.isfinite(log_p), log_p, -np.inf)
    return np.logaddexp(log_p, np.log(settings.noise_floor_per_ns))


class _TrackObjective:
    """-log L of one event as a function of the 5 scaled parameters around a reference."""

    def __init__(self, pos, t, n_pe, settings: TrackFitSettings):
        self.pos, self.t, self.n_pe, self.settings = pos, t, n_pe, settings
        self.n_calls = 0
        self.set_reference(np.array([0.0, 0.0, 1.0]), pos.mean(axis=0), float(np.median(t)))

    def set_reference(self, direction: np.ndarray, anchor: np.ndarray, t0: float) -> None:
        self.ref_dir = direction / np.linalg.norm(direction)
        self.ref_anchor = np.asarray(anchor, dtype=float)
        self.ref_t0 = float(t0)
        self.e1, self.e2 = orthonormal_pair(self.ref_dir)

    def hypothesis(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        a, b, u, v, tau = np.asarray(x) * _SCALE
        r = np.hypot(a, b)
        sinc = np.sinc(r / np.pi)  # sin(r)/r
        direction = np.cos(r) * self.ref_dir + sinc * (a * self.e1 + b * self.e2)
        anchor = self.ref_anchor + u * self.e1 + v * self.e2
        return direction, anchor, self.ref_t0 + tau

    def __call__(self, x: np.ndarray) -> float:
        self.n_calls += 1
        direction, anchor, t0 = self.hypothesis(x)
        terms = track_log_likelihood_terms(self.pos, self.t, self.n_pe, anchor, t0, direction, self.settings)
        value = -float(np.sum(terms))
        return value if np.isfinite(value) else 1e30


def _best_time(objective: _TrackObjective, direction: np.ndarray, anchor: np.ndarray) -> float:
    """Return the start time t0 [ns] (among residual quantiles) with the best likelihood."""
    geo = track_geometry(objective.pos, anchor, direction, objective.settings.medium)
    candidates = np.quantile(objective.t - geo["delay_ns"], [0.05, 0.15, 0.3, 0.5])
    values = []
    for t0 in candidates:
        objective.set_reference(direction, anchor, t0)
        values.append(objective(np.zeros(5)))
    return float(candidates[int(np.argmin(values))])


def _local_fit(objective: _TrackObjective, direction, anchor) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Return (-log L, direction, anchor, t0) after one local minimisation from a seed."""
    t0 = _best_time(objective, direction, anchor)
    objective.set_reference(direction, anchor, t0)
    # Nelder-Mead: robust to the kinks of the noise floor; tolerances 0.06° / 0.01 in -log L.
    result = optimize.minimize(objective, np.zeros(5), method="Nelder-Mead",
                               options={"maxiter": objective.settings.max_iterations * 5,
                                        "xatol": 1e-3, "fatol": 1e-2, "initial_simplex": _simplex()})
    fitted_dir, fitted_anchor, fitted_t0 = objective.hypothesis(result.x)
    return float(result.fun), fitted_dir, fitted_anchor, fitted_t0


def _simplex() -> np.ndarray:
    # First steps: 3° in angle, 5 m in position, 5 ns in time.
    steps = np.array([0.05, 0.05, 0.5, 0.5, 0.5])
    return np.vstack([np.zeros(5), np.diag(steps)])


def _paraboloid_sigma_deg(objective: _TrackObjective) -> float:
    """Return sqrt of the mean of the two direction variances [deg] from the Hessian at the reference."""
    h = _HESSIAN_STEP
    f0 = objective(np.zeros(5))
    hess = np.zeros((5, 5))
    for i in range(5):
        ei = np.zeros(5)
        ei[i] = h[i]
        hess[i, i] = (objective(ei) - 2 * f0 + objective(-ei)) / h[i] ** 2
        for j in range(i + 1, 5):
            ej = np.zeros(5)
            ej[j] = h[j]
            value = (objective(ei + ej) - objective(ei - ej) - objective(-ei + ej) + objective(-ei - ej))
            hess[i, j] = hess[j, i] = value / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return float("nan")
    variances = np.diag(cov)[:2]
    if not np.all(np.isfinite(variances)) or np.any(variances <= 0):
        return float("nan")
    return float(np.degrees(np.sqrt(variances.mean())))


def _restart_directions(direction: np.ndarray, angle_deg: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` unit vectors ``angle_deg`` away from ``direction`` at random azimuths."""
    e1, e2 = orthonormal_pair(direction)
    phi = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / max(n, 1)
    angle = np.radians(angle_deg)
    return (np.cos(angle) * direction + np.sin(angle) * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2))


def fit_track_event(pos: np.ndarray, t: np.ndarray, n_pe: np.ndarray, seed_dir: np.ndarray,
                    seed_anchor: np.ndarray, settings: TrackFitSettings, event_seed: int) -> dict[str, float]:
    """Return the iterative likelihood fit of one event's hits (direction, anchor, -logL, sigma)."""
    objective = _TrackObjective(pos, t, n_pe, settings)
    rng = np.random.default_rng([settings.seed, event_seed])
    best = _local_fit(objective, seed_dir, seed_anchor)
    for restart_dir in _restart_directions(best[1], settings.restart_angle_deg, settings.n_restarts, rng):
        candidate = _local_fit(objective, restart_dir, best[2])
        if candidate[0] < best[0]:
            best = candidate
    value, direction, anchor, t0 = best
    objective.set_reference(direction, anchor, t0)
    sigma = _paraboloid_sigma_deg(objective)
    return {"neg_logl": value, "dir_x": direction[0], "dir_y": direction[1], "dir_z": direction[2],
            "anchor_x": anchor[0], "anchor_y": anchor[1], "anchor_z": anchor[2], "anchor_t_ns": t0,
            "paraboloid_sigma_deg": sigma, "n_evaluations": objective.n_calls}


def _fit_chunk(task: tuple) -> list[dict[str, float]]:
    settings, items = task
    return [fit_track_event(*item[:5], settings=settings, event_seed=item[5]) for item in items]


def first_pulses(flat: RaggedEvents) -> tuple[RaggedEvents, np.ndarray]:
    """Return (the first pulse on each sensor of each event, total charge of that sensor)."""
    order = np.lexsort((flat["t"], flat["sensor_id"], flat.event_index))
    event, sensor = flat.event_index[order], flat["sensor_id"][order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (event[1:] != event[:-1]) | (sensor[1:] != sensor[:-1])
    group = np.cumsum(new) - 1
    charge = np.bincount(group, weights=flat["charge"][order])
    keep = np.zeros(len(order), dtype=bool)
    keep[order[new]] = True
    # flat.select keeps the original order; map the group charges onto it.
    sensor_charge = np.empty(len(order))
    sensor_charge[order] = charge[group]
    return flat.select(keep), sensor_charge[keep]


class LikelihoodTrackFit:
    """SPE (or MPE) likelihood track fit seeded by LineFit, as a registry method."""

    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, mpe: bool = False, n_restarts: int = 4,
                 restart_angle_deg: float = 25.0, n_jobs: int | None = None, seed: int = 0,
                 clean: bool = True):
        self.setup: DetectorSetup = detector_setup(detector)
        self.name = "likelihood-mpe" if mpe else "likelihood"
        self.settings = TrackFitSettings(
            medium=self.setup.medium, jitter_ns=self.setup.response.jitter_ns,
            noise_floor_per_ns=self.setup.noise_rate_per_ns, mpe=mpe, n_restarts=n_restarts,
            restart_angle_deg=restart_angle_deg, seed=seed,
        )
        self.n_jobs = n_jobs
        self.clean = clean

    def describe(self) -> MethodInfo:
        """Return what the fit is: a direction estimate, valid on any detector."""
        return classical_info(self, ("direction",))

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event: direction, -logL/hit, paraboloid sigma, LineFit seed."""
        hits, reasons = usable_hits(events)
        table = start_predictions(events, self.name, reasons)
        if self.clean:
            hits = clean_hits(hits, self.setup.medium.name)
        seed = linefit_flat(hits)
        pulses, sensor_charge = first_pulses(hits)
        pulse_counts = pulses.counts
        no_seed = ~np.all(np.isfinite(seed.direction), axis=1) | (pulse_counts < 3)
        reasons = np.where((reasons == "") & no_seed, "hits: fewer than 3 sensors or no LineFit seed",
                           reasons)
        todo = np.flatnonzero(reasons == "")
        event_ids = table["event_id"].to_numpy()
        items = [
            (pulses["pos"][pulses.event_slice(i)], pulses["t"][pulses.event_slice(i)],
             np.maximum(sensor_charge[pulses.event_slice(i)], 1.0), seed.direction[i], seed.anchor[i],
             zlib.crc32(np.int64(event_ids[i]).tobytes()))
            for i in todo
        ]
        tasks = [(self.settings, items[r.start:r.stop]) for r in split_evenly(len(items), self.n_jobs)]
        results = [row for chunk in map_chunks(_fit_chunk, tasks, self.n_jobs) for row in chunk]
        columns = ["dir_x", "dir_y", "dir_z", "anchor_x", "anchor_y", "anchor_z", "anchor_t_ns",
                   "paraboloid_sigma_deg", "n_evaluations"]
        for name in columns:
            table[name] = np.nan
        neg_logl = np.full(len(table), np.nan)
        for i, row in zip(todo, results, strict=True):
            for name in columns:
                table.at[i, name] = row[name]
            neg_logl[i] = row["neg_logl"]
        table["neg_logl_per_hit"] = neg_logl / np.maximum(pulse_counts, 1)
        table["n_hits_used"] = pulse_counts.astype(float)
        table["linefit_dir_x"], table["linefit_dir_y"], table["linefit_dir_z"] = seed.direction.T
        table["linefit_speed_m_per_ns"] = seed.speed_m_per_ns
        table["linefit_opening_deg"] = opening_angle_deg(
            table[["dir_x", "dir_y", "dir_z"]].to_numpy(), seed.direction)
        failed_fit = (reasons == "") & ~np.isfinite(neg_logl)
        reasons = np.where(failed_fit, "fit: likelihood not finite", reasons)
        failed = reasons != ""
        table.loc[failed, "fit_status"] = ["failed: " + r for r in reasons[failed]]
        return finish(table)


def make_likelihood(detector: str | Geometry = DEFAULT_DETECTOR, n_restarts: int = 4, restart_angle_deg: float = 25.0,
                    n_jobs: int | None = None, seed: int = 0, clean: bool = True) -> LikelihoodTrackFit:
    """Return the SPE likelihood track fit (registry factory)."""
    return LikelihoodTrackFit(detector, False, n_restarts, restart_angle_deg, n_jobs, seed, clean)


def make_likelihood_mpe(detector: str | Geometry = DEFAULT_DETECTOR, n_restarts: int = 4, restart_angle_deg: float = 25.0,
                        n_jobs: int | None = None, seed: int = 0, clean: bool = True) -> LikelihoodTrackFit:
    """Return the MPE likelihood track fit (registry factory)."""
    return LikelihoodTrackFit(detector, True, n_restarts, restart_angle_deg, n_jobs, seed, clean)
