"""Likelihood cascade fit: vertex, time, direction and energy of a point-like shower.

The likelihood has two parts, both from the simulator's own physics functions:
- charge: Poisson over every sensor that light can reach (hit or not), with the mean
  μ_i = E · ε_i · a_i(vertex, direction) + b, a_i the expected photo-electrons per GeV from
  the medium's photon tables (nurec.physics.light.cascade_npe_per_gev, the same expectation
  the simulator samples, so a cascade's forward-backward asymmetry carries its direction),
  ε_i the sensor's relative efficiency and b the mean noise charge in the readout window
  (noise rate × window); the observed n_i is the sensor's summed charge;
- time: the first pulse on each hit sensor, log(p₁(t - t0 - d/c_medium | d, N) + ε) with p₁
  the pdf of the first of the sensor's N photo-electrons (N its charge; nurec.physics.timing.
  log_first_arrival_pdf, from the Pandel ⊗ jitter pdf) and ε the noise rate
  (the simulator's delays in ice; in water it draws them from the tables, which this
  time term does not yet use).

The energy is profiled out at every step: for fixed geometry the Poisson likelihood is
maximised by the EM fixed point E ← E · Σ(n_i a_i / μ_i) / Σ a_i (monotone). The
remaining six parameters (vertex, t0, two tangent-plane direction angles) are fitted
with Nelder-Mead from a charge-weighted centre-of-gravity seed and several seed
directions. ``energy`` is the electromagnetic-equivalent deposited energy [GeV].
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
    failure_reasons,
    finish,
    flatten_hits,
    orthonormal_pair,
    start_predictions,
)
from nurec.baselines.likelihood import first_pulses
from nurec.baselines.linefit import linefit_flat
from nurec.baselines.parallel import map_chunks, split_evenly
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import MethodInfo
from nurec.physics.light import cascade_npe_per_gev
from nurec.physics.medium import Medium
from nurec.physics.timing import cascade_direct_delay_ns, log_first_arrival_pdf

# Sensors further than this many attenuation lengths from the seed vertex see no light
# (the same reach the simulator uses, sim.detector.REACH_ATTENUATION_LENGTHS).
REACH_ATTENUATION_LENGTHS = 12.0
_SCALE = np.array([10.0, 10.0, 10.0, 10.0, 1.0, 1.0])  # m, m, m, ns, rad, rad
_ENERGY_ITERATIONS = 12


@dataclass(frozen=True)
class CascadeFitSettings:
    """Physics and detector constants one cascade fit needs."""

    medium: Medium
    jitter_ns: float
    noise_floor_per_ns: float
    noise_charge_per_sensor: float
    n_directions: int = 3
    n_scan_directions: int = 96
    max_iterations: int = 1500


def profile_energy_gev(per_gev: np.ndarray, charge: np.ndarray, noise: float) -> float:
    """Return the energy [GeV] maximising Σ n_i log μ_i - μ_i with μ_i = E a_i + noise."""
    total = float(per_gev.sum())
    if total <= 0:
        return 0.0
    energy = max(float(charge.sum()) / total, 1e-3)
    for _ in range(_ENERGY_ITERATIONS):
        energy = energy * float(np.sum(charge * per_gev / (energy * per_gev + noise))) / total
    return max(energy, 1e-3)


class _CascadeObjective:
    def __init__(self, sensor_pos, sensor_dir, sensor_efficiency, sensor_charge, pulse_pos, pulse_t, pulse_pe,
                 settings):
        self.sensor_pos, self.sensor_dir, self.sensor_charge = sensor_pos, sensor_dir, sensor_charge
        self.sensor_efficiency = sensor_efficiency
        self.pulse_pos, self.pulse_t, self.pulse_pe, self.settings = pulse_pos, pulse_t, pulse_pe, settings
        self.n_calls = 0
        self.last_energy = np.nan

    def set_reference(self, vertex, t0, direction):
        self.ref_vertex, self.ref_t0 = np.asarray(vertex, float), float(t0)
        self.ref_dir = direction / np.linalg.norm(direction)
        self.e1, self.e2 = orthonormal_pair(self.ref_dir)

    def hypothesis(self, x):
        dx, dy, dz, dt, a, b = np.asarray(x) * _SCALE
        r = np.hypot(a, b)
        direction = np.cos(r) * self.ref_dir + np.sinc(r / np.pi) * (a * self.e1 + b * self.e2)
        return self.ref_vertex + np.array([dx, dy, dz]), self.ref_t0 + dt, direction

    def evaluate(self, vertex, t0, direction) -> tuple[float, float]:
        s = self.settings
        per_gev, _ = cascade_npe_per_gev(self.sensor_pos, self.sensor_dir, vertex, direction, s.medium)
        per_gev = per_gev * self.sensor_efficiency
        energy = profile_energy_gev(per_gev, self.sensor_charge, s.noise_charge_per_sensor)
        mu = energy * per_gev + s.noise_charge_per_sensor
        charge_term = float(np.sum(mu - self.sensor_charge * np.log(mu)))
        distance = np.linalg.norm(self.pulse_pos - vertex, axis=1)
        residual = self.pulse_t - t0 - cascade_direct_delay_ns(distance, s.medium)
        log_p = log_first_arrival_pdf(residual, distance, self.pulse_pe, s.medium, s.jitter_ns)
        log_p = np.where(np.isfinite(log_p), log_p, -np.inf)
        time_term = -float(np.sum(np.logaddexp(log_p, np.log(s.noise_floor_per_ns))))
        return charge_term + time_term, energy

    def __call__(self, x) -> float:
        self.n_calls += 1
        value, self.last_energy = self.evaluate(*self.hypothesis(x))
        return value if np.isfinite(value) else 1e30


def _best_t0(objective: _CascadeObjective, vertex, direction) -> float:
    """Return the vertex time [ns] of lowest -log L for a fixed vertex and direction.

    A bounded 1-D search between the 1% and 60% quantiles of the pulses' time residuals
    (earlier quantiles are noise), started from the best of a coarse grid.
    """
    distance = np.linalg.norm(objective.pulse_pos - vertex, axis=1)
    residual = objective.pulse_t - cascade_direct_delay_ns(distance, objective.settings.medium)
    grid = np.quantile(residual, np.linspace(0.01, 0.6, 13))
    values = [objective.evaluate(vertex, t0, direction)[0] for t0 in grid]
    k = int(np.argmin(values))
    low, high = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    if high <= low:
        return float(grid[k])
    result = optimize.minimize_scalar(lambda t0: objective.evaluate(vertex, t0, direction)[0],
                                      bounds=(low, high), method="bounded", options={"xatol": 0.5})
    return float(result.x) if result.fun <= values[k] else float(grid[k])


def fibonacci_directions(n: int) -> np.ndarray:
    """Return ``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    r = np.sqrt(1.0 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _minimize(objective: _CascadeObjective, x0: np.ndarray, step: np.ndarray, max_iterations: int):
    simplex = np.vstack([x0, x0 + np.diag(step)])
    return optimize.minimize(objective, x0, method="Nelder-Mead",
                             options={"maxiter": max_iterations, "xatol": 1e-3, "fatol": 1e-2,
                                      "initial_simplex": simplex})


def _fit_vertex(objective: _CascadeObjective, seed_vertex, direction, max_iterations: int):
    """Return (vertex, t0) fitted with the direction held fixed: arrival times fix the vertex."""
    objective.set_reference(seed_vertex, _best_t0(objective, seed_vertex, direction), direction)

    def fixed_direction(x):
        return objective(np.concatenate([x, [0.0, 0.0]]))

    result = optimize.minimize(fixed_direction, np.zeros(4), method="Nelder-Mead",
                               options={"maxiter": max_iterations, "xatol": 1e-3, "fatol": 1e-2,
                                        "initial_simplex": np.vstack([np.zeros(4), np.diag([0.5] * 4)])})
    vertex, t0, _ = objective.hypothesis(np.concatenate([result.x, [0.0, 0.0]]))
    return vertex, t0


def _scan_directions(objective: _CascadeObjective, vertex, t0, candidates: np.ndarray, keep: int) -> np.ndarray:
    """Return the ``keep`` candidate directions of lowest -log L at a fixed vertex, best first, ≥ 30° apart."""
    values = np.array([objective.evaluate(vertex, t0, d)[0] for d in candidates])
    objective.n_calls += len(candidates)
    chosen: list[np.ndarray] = []
    for index in np.argsort(values):
        if all(candidates[index] @ c < np.cos(np.radians(30.0)) for c in chosen):
            chosen.append(candidates[index])
        if len(chosen) == keep:
            break
    return np.array(chosen)


def _best_joint_fit(objective: _CascadeObjective, starts, max_iterations: int) -> tuple:
    """Return (-log L, vertex, t0, direction) of the best joint six-parameter fit from ``starts`` (vertex, t0, direction)."""
    best = None
    for vertex, t0, direction in starts:
        objective.set_reference(vertex, t0, direction)
        result = _minimize(objective, np.zeros(6), np.array([0.5, 0.5, 0.5, 0.5, 0.3, 0.3]), max_iterations)
        if best is None or result.fun < best[0]:
            best = (float(result.fun), *objective.hypothesis(result.x))
    return best


def fit_cascade_event(sensor_pos, sensor_dir, sensor_efficiency, sensor_charge, pulse_pos, pulse_t, pulse_pe,
                      seed_vertex, seed_dir, settings: CascadeFitSettings, event_seed: int) -> dict[str, float]:
    """Return the cascade fit of one event: vertex, t0, direction, EM energy and -log L.

    Three stages, because vertex and direction are nearly separable (times fix the vertex; the
    light's forward-backward asymmetry the direction) and a joint simplex from a poor direction
    gets stuck: the vertex and time with the seed direction held fixed; a scan of
    ``n_scan_directions`` directions (and the seed) at that vertex; the vertex and time again with
    the best of them; a second scan; joint fits of all six parameters from the ``n_directions``
    best scanned directions, keeping the best; and one more joint fit from the reversed best
    direction with its own vertex, which frees fits caught in the mirror minimum.
    """
    objective = _CascadeObjective(sensor_pos, sensor_dir, sensor_efficiency, sensor_charge, pulse_pos, pulse_t,
                                  pulse_pe, settings)
    rng = np.random.default_rng(event_seed)
    # A random rotation of the lattice per event, so that no direction is favoured across events.
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    candidates = np.vstack([seed_dir, fibonacci_directions(settings.n_scan_directions) @ rotation.T])
    vertex, t0 = _fit_vertex(objective, seed_vertex, seed_dir, settings.max_iterations)
    # The vertex found with a wrong direction shifts along it (cascade light is forward-peaked):
    # refit it once with the best scanned direction before the final scan.
    first_choice = _scan_directions(objective, vertex, t0, candidates, 1)[0]
    vertex, t0 = _fit_vertex(objective, vertex, first_choice, settings.max_iterations)
    starts = [(vertex, t0, d) for d in _scan_directions(objective, vertex, t0, candidates, settings.n_directions)]
    best = _best_joint_fit(objective, starts, settings.max_iterations)
    # A fit stuck in the mirror minimum (light seen from behind, vertex pulled along the axis):
    # refit the vertex for the reversed direction and fit again from there.
    reversed_vertex, reversed_t0 = _fit_vertex(objective, best[1], -best[3], settings.max_iterations)
    best = min(best, _best_joint_fit(objective, [(reversed_vertex, reversed_t0, -best[3])], settings.max_iterations),
               key=lambda fit: fit[0])
    value, vertex, t0, direction = best
    value, energy = objective.evaluate(vertex, t0, direction)
    return {"neg_logl": value, "dir_x": direction[0], "dir_y": direction[1], "dir_z": direction[2],
            "vertex_x": vertex[0], "vertex_y": vertex[1], "vertex_z": vertex[2], "vertex_t_ns": t0,
            "energy": energy, "n_evaluations": objective.n_calls}


def _fit_chunk(task: tuple) -> list[dict[str, float]]:
    settings, items = task
    return [fit_cascade_event(*item[:9], settings=settings, event_seed=item[9]) for item in items]


class CascadeLikelihoodFit:
    """Point-cascade likelihood fit over all reachable sensors, as a registry method."""

    name = "cascade-likelihood"
    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, n_directions: int = 3,
                 n_jobs: int | None = None):
        self.setup: DetectorSetup = detector_setup(detector)
        response = self.setup.response
        self.settings = CascadeFitSettings(
            medium=self.setup.medium, jitter_ns=response.jitter_ns,
            noise_floor_per_ns=self.setup.noise_rate_per_ns,
            # Mean noise charge per sensor in the readout window (each noise pulse ≈ 1 pe).
            noise_charge_per_sensor=self.setup.noise_rate_per_ns * self.setup.readout_window_ns,
            n_directions=n_directions,
        )
        self.n_jobs = n_jobs

    def describe(self) -> MethodInfo:
        """Return what the fit is: cascade direction and energy, valid on any detector."""
        return classical_info(self, ("direction", "energy"))

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event: cascade direction, EM energy, vertex, -logL."""
        geometry = self.setup.geometry
        flat = flatten_hits(events)
        reasons = failure_reasons(events, flat)
        table = start_predictions(events, self.name, reasons)
        good = (reasons == "")[flat.event_index]
        hits = flat.select(good)
        rows = np.full(hits.n_items, -1)
        try:
            rows = geometry.sensor_lookup(hits["sensor_id"])
        except ValueError:
            # Unknown sensors fail only their own events.
            known = np.isin(hits["sensor_id"], geometry.sensor_id)
            bad_events = np.unique(hits.event_index[~known])
            reasons[bad_events] = f"hits.sensor_id: not in the {geometry.name} geometry"
            hits = hits.select(known & (reasons == "")[hits.event_index])
            rows = geometry.sensor_lookup(hits["sensor_id"])
        cleaned = clean_hits(hits, self.setup.medium.name)
        pulses, pulse_pe = first_pulses(cleaned)
        seed = linefit_flat(cleaned)
        n = flat.n_events
        q = np.where(cleaned["charge"] > 0, cleaned["charge"], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cog = cleaned.segment_sum(q[:, None] * cleaned["pos"]) / cleaned.segment_sum(q)[:, None]
        seed_dir = np.where(np.all(np.isfinite(seed.direction), axis=1, keepdims=True), seed.direction,
                            np.array([0.0, 0.0, -1.0]))
        reach = REACH_ATTENUATION_LENGTHS * self.setup.medium.attenuation_length_m
        event_ids = table["event_id"].to_numpy()
        todo = np.flatnonzero((reasons == "") & (pulses.counts >= 3))
        reasons[(reasons == "") & (pulses.counts < 3)] = "hits: fewer than 3 sensors after cleaning"
        items = []
        for i in todo:
            near = np.linalg.norm(geometry.position - cog[i], axis=1) < reach
            charge = np.bincount(rows[hits.event_slice(i)], weights=hits["charge"][hits.event_slice(i)],
                                 minlength=geometry.n_sensors)
            sl = pulses.event_slice(i)
            items.append((geometry.position[near], geometry.direction[near], geometry.efficiency[near], charge[near],
                          pulses["pos"][sl], pulses["t"][sl], pulse_pe[sl], cog[i], seed_dir[i],
                          zlib.crc32(np.int64(event_ids[i]).tobytes())))
        tasks = [(self.settings, items[r.start:r.stop]) for r in split_evenly(len(items), self.n_jobs, max_chunk=16)]
        results = [row for chunk in map_chunks(_fit_chunk, tasks, self.n_jobs) for row in chunk]
        columns = ["dir_x", "dir_y", "dir_z", "energy", "vertex_x", "vertex_y", "vertex_z", "vertex_t_ns",
                   "n_evaluations"]
        for name in columns:
            table[name] = np.nan
        neg_logl = np.full(n, np.nan)
        for i, row in zip(todo, results, strict=True):
            for name in columns:
                table.at[i, name] = row[name]
            neg_logl[i] = row["neg_logl"]
        table["neg_logl_per_hit"] = neg_logl / np.maximum(pulses.counts, 1)
        table["n_hits_used"] = pulses.counts.astype(float)
        reasons[(reasons == "") & ~np.isfinite(neg_logl)] = "fit: likelihood not finite"
        failed = reasons != ""
        table.loc[failed, "fit_status"] = ["failed: " + r for r in reasons[failed]]
        return finish(table)


make_cascade_likelihood = CascadeLikelihoodFit
"""Registry factory: CascadeLikelihoodFit(detector=..., n_directions=..., n_jobs=...)."""
