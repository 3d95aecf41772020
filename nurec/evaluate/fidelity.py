"""How far simulated events are from someone else's: event-level features and a classifier's separability.

Two samples of events with truth (for example official KM3NeT Monte Carlo converted with
``nurec convert`` and nurec's own simulation of the same detector) are compared through
features a physicist would histogram: hits, optical modules and PMTs hit, local
coincidences, time span, time residuals to the true neutrino hypothesis (direct hits,
scattering tail, hits outside the Cherenkov window), the distance of direct-hit modules,
and per-hit charge. ``separability`` then trains a gradient-boosted classifier to tell the
samples apart; a cross-validated ROC AUC near 0.5 means the features cannot, near 1 means
the simulation is easy to spot. Residuals use the true vertex, time and direction: a track
hypothesis (muon along the neutrino) for muon-neutrino CC events, a point source otherwise.

Optical modules are found from hit positions alone (PMTs within ``MODULE_RADIUS_M`` of each
other), so official files and simulated events are grouped the same way whatever their
sensor numbering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from nurec.geometry import linked_groups
from nurec.physics.medium import Medium
from nurec.physics.timing import cascade_direct_delay_ns, track_geometry
from nurec.ragged import RaggedEvents

MODULE_RADIUS_M = 1.0
"""PMTs closer than this belong to one optical module (KM3NeT DOM radius 0.22 m; modules ≥ 3 m apart)."""
L1_WINDOW_NS = 10.0
"""KM3NeT's L1: two or more hits on one module within this window (Jpp JTriggerParameters, TMaxLocal)."""
DIRECT_WINDOW_NS = (-10.0, 25.0)
"""Time residuals counted as direct (unscattered) light [ns]."""
TAIL_WINDOW_NS = (50.0, 500.0)
"""Time residuals counted as the scattering tail [ns] (a fraction of the hits within -50..500 ns)."""
CHERENKOV_WINDOW_NS = (-20.0, 500.0)
"""Hits with residuals outside this window are not light of the true hypothesis (noise, other light)."""

CHARGE_FEATURES = ["charge_median", "charge_below_half_pe", "charge_q90"]
FEATURES = [
    "log10_hits", "log10_modules", "log10_pmts", "l1_fraction", "log10_triggered_hits", "time_span_ns",
    "outside_window_fraction",
    "direct_hits", "direct_module_distance_m", "residual_q16_ns", "residual_q50_ns", "residual_q84_ns",
    "tail_fraction", *CHARGE_FEATURES,
]
"""Event-level features, in column order; the last ones describe the hit charges."""


def module_of_positions(positions: np.ndarray, radius_m: float = MODULE_RADIUS_M) -> np.ndarray:
    """Return a module index per position: positions closer than ``radius_m`` (transitively) share one."""
    return linked_groups(positions, radius_m)


@dataclass(frozen=True)
class _Hypothesis:
    """The true hypothesis per event: vertex, direction (of travel), interaction time, track or point."""

    vertex: np.ndarray
    direction: np.ndarray
    t0: np.ndarray
    is_track: np.ndarray

    @classmethod
    def of(cls, truth: ak.Array) -> _Hypothesis:
        return cls(np.column_stack([ak.to_numpy(truth[f"vertex_{c}"]) for c in "xyz"]).astype(float),
                   np.column_stack([ak.to_numpy(truth[f"dir_{c}"]) for c in "xyz"]).astype(float),
                   ak.to_numpy(truth.t0).astype(float), ak.to_numpy(truth.is_track).astype(bool))

    def direct_delay_ns(self, position: np.ndarray, event, medium: Medium) -> tuple[np.ndarray, np.ndarray]:
        """Return (direct-light delay after t0 [ns], distance [m]) at ``position`` for events ``event``
        (an index array, or a broadcasting index such as ``(slice(None), None)``): the track's
        Cherenkov time and perpendicular distance for tracks, the straight path from the vertex otherwise."""
        vertex, direction, is_track = self.vertex[event], self.direction[event], self.is_track[event]
        track = track_geometry(position, vertex, direction, medium)
        point_distance = np.linalg.norm(position - vertex, axis=-1)
        delay = np.where(is_track, track["delay_ns"], cascade_direct_delay_ns(point_distance, medium))
        return delay, np.where(is_track, track["perpendicular_m"], point_distance)


def hit_residuals(hits: RaggedEvents, truth: ak.Array, medium: Medium) -> tuple[np.ndarray, np.ndarray]:
    """Return (time residual [ns], distance [m] of the hit from the true hypothesis) per hit.

    Muon-neutrino CC events (``truth.is_track``) use a track along the neutrino from the
    vertex (perpendicular distance); the others a point source at the vertex.
    """
    hypothesis = _Hypothesis.of(truth)
    position = np.column_stack([hits["x"], hits["y"], hits["z"]]).astype(float)
    delay, distance = hypothesis.direct_delay_ns(position, hits.event_index, medium)
    return hits["t"].astype(float) - hypothesis.t0[hits.event_index] - delay, distance


def _per_event_quantile(values: np.ndarray, event: np.ndarray, n_events: int, q: float) -> np.ndarray:
    out = np.full(n_events, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, event))
    values, event = values[order], event[order]
    counts = np.bincount(event, minlength=n_events)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    pick = starts[has] + np.floor(q * (counts[has] - 1) + 0.5).astype(np.int64)
    out[has] = values[pick]
    return out


def event_features(events: ak.Array, medium: Medium) -> pd.DataFrame:
    """Return one row of FEATURES per event (events need hits and truth; see the module docstring)."""
    names = ["x", "y", "z", "t", "charge", "sensor_id"]
    hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
    n, event = hits.n_events, hits.event_index
    position = np.column_stack([hits["x"], hits["y"], hits["z"]])
    module = module_of_positions(position)
    residual, distance = hit_residuals(hits, events.truth, medium)

    def per_event_unique(keys: np.ndarray) -> np.ndarray:
        pairs = np.unique(np.column_stack([event, keys]), axis=0) if len(keys) else np.zeros((0, 2), np.int64)
        return np.bincount(pairs[:, 0].astype(np.int64), minlength=n).astype(float)

    n_hits = hits.counts.astype(float)
    direct = (residual >= DIRECT_WINDOW_NS[0]) & (residual <= DIRECT_WINDOW_NS[1])
    near = (residual >= -50.0) & (residual <= TAIL_WINDOW_NS[1])
    tail = (residual >= TAIL_WINDOW_NS[0]) & (residual <= TAIL_WINDOW_NS[1])
    outside = (residual < CHERENKOV_WINDOW_NS[0]) | (residual > CHERENKOV_WINDOW_NS[1])
    charge = hits["charge"]
    if "trig" in events.hits.fields:  # the trigger's own hits, where the events say which
        trig = ak.to_numpy(ak.flatten(events.hits.trig)).astype(float)
        triggered = np.log10(np.maximum(hits.segment_sum(trig), 1))
    else:
        triggered = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        features = pd.DataFrame({
            "log10_hits": np.log10(np.maximum(n_hits, 1)),
            "log10_modules": np.log10(np.maximum(per_event_unique(module), 1)),
            "log10_pmts": np.log10(np.maximum(per_event_unique(hits["sensor_id"].astype(np.int64)), 1)),
            "l1_fraction": hits.segment_sum(local_coincidence(event, module, hits["t"]).astype(float)) / n_hits,
            "log10_triggered_hits": triggered,
            "time_span_ns": hits.segment_max(hits["t"], np.nan) - hits.segment_min(hits["t"], np.nan),
            "outside_window_fraction": hits.segment_sum(outside.astype(float)) / n_hits,
            "direct_hits": hits.segment_sum(direct.astype(float)),
            "direct_module_distance_m": _per_event_quantile(distance[direct], event[direct], n, 0.5),
            "residual_q16_ns": _per_event_quantile(residual[near], event[near], n, 0.16),
            "residual_q50_ns": _per_event_quantile(residual[near], event[near], n, 0.50),
            "residual_q84_ns": _per_event_quantile(residual[near], event[near], n, 0.84),
            "tail_fraction": hits.segment_sum(tail.astype(float)) / hits.segment_sum(near.astype(float)),
            "charge_median": _per_event_quantile(charge, event, n, 0.5),
            "charge_below_half_pe": hits.segment_sum((charge < 0.5).astype(float)) / n_hits,
            "charge_q90": _per_event_quantile(charge, event, n, 0.9),
        })
    return features[FEATURES]


def local_coincidence(event: np.ndarray, module: np.ndarray, t_ns: np.ndarray,
                      window_ns: float = L1_WINDOW_NS) -> np.ndarray:
    """Return True for hits with another hit on the same module of the same event within ``window_ns``."""
    if len(t_ns) == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((t_ns, module, event))
    e, m, t = event[order], module[order], t_ns[order]
    same = (e[1:] == e[:-1]) & (m[1:] == m[:-1]) & (np.diff(t) <= window_ns)
    flag = np.zeros(len(t), dtype=bool)
    flag[1:] |= same
    flag[:-1] |= same
    out = np.zeros(len(t), dtype=bool)
    out[order] = flag
    return out


def light_per_module(events: ak.Array, module_positions: np.ndarray, medium: Medium,
                     edges_m: np.ndarray) -> pd.DataFrame:
    """Return, per bin of distance from the true hypothesis, the fraction of the detector's modules with light.

    A module has light when one of its hits lies within CHERENKOV_WINDOW_NS of the direct
    arrival time (so the readout window's background counts little). ``module_positions``
    are the centres of every module of the detector (hit or not); a hit is assigned to the
    nearest one. Muon-neutrino CC events use the perpendicular distance to the track (only
    the part downstream of the vertex), others the distance to the vertex.
    """
    names = ["x", "y", "z", "t"]
    hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
    residual, _ = hit_residuals(hits, events.truth, medium)
    hits = hits.select((residual >= CHERENKOV_WINDOW_NS[0]) & (residual <= CHERENKOV_WINDOW_NS[1]))
    position = np.column_stack([hits["x"], hits["y"], hits["z"]])
    _, nearest = cKDTree(module_positions).query(position) if len(position) else (None, np.zeros(0, np.int64))
    truth = events.truth
    n_modules = len(module_positions)
    lit = np.zeros((hits.n_events, n_modules), dtype=bool)
    lit[hits.event_index, nearest] = True
    hypothesis = _Hypothesis.of(truth)
    rel = module_positions[None, :, :] - hypothesis.vertex[:, None, :]
    along = np.einsum("emk,ek->em", rel, hypothesis.direction)
    perpendicular = np.sqrt(np.maximum(np.einsum("emk,emk->em", rel, rel) - along**2, 0.0))
    distance = np.where(hypothesis.is_track[:, None], np.where(along >= 0, perpendicular, np.inf),
                        np.linalg.norm(rel, axis=2))
    rows = []
    for low, high in zip(edges_m[:-1], edges_m[1:], strict=True):
        inside = (distance >= low) & (distance < high)
        rows.append({"distance_low_m": low, "distance_high_m": high, "modules": int(inside.sum()),
                     "hit_fraction": float(lit[inside].mean()) if inside.any() else np.nan})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Separability:
    """Cross-validated ROC AUC of a classifier telling two samples apart (mean and spread over repeats)."""

    auc_mean: float
    auc_std: float
    repeats: tuple[float, ...]
    n_a: int
    n_b: int


def separability(a: pd.DataFrame, b: pd.DataFrame, features: Sequence[str], seed: int = 0, repeats: int = 10,
                 folds: int = 5) -> Separability:
    """Return the ROC AUC of a gradient-boosted classifier separating ``a`` from ``b`` on ``features``.

    Stratified ``folds``-fold cross-validation, repeated ``repeats`` times with seeds derived
    from ``seed``; each repeat's AUC is computed on its out-of-fold scores.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x = pd.concat([a[list(features)], b[list(features)]], ignore_index=True).to_numpy(float)
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    folds = max(2, min(folds, len(a), len(b)))
    aucs = []
    for repeat in range(repeats):
        score = np.zeros(len(y))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        for train, test in splitter.split(x, y):
            model = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=8, min_samples_leaf=5,
                                                   learning_rate=0.1, random_state=seed + repeat)
            model.fit(x[train], y[train])
            score[test] = model.predict_proba(x[test])[:, 1]
        aucs.append(float(roc_auc_score(y, score)))
    return Separability(float(np.mean(aucs)), float(np.std(aucs)), tuple(aucs), len(a), len(b))


@dataclass(frozen=True)
class BackgroundRates:
    """Optical background measured in events with truth, from hits that cannot be the event's light.

    ``singles_rate_hz`` is per PMT; pair rates are per module: same-module pairs of hits on
    different PMTs within the L1 window, as measured, as expected from uncorrelated singles
    alone (R²·w with R the module's singles rate), and the excess (genuine coincidences).
    """

    singles_rate_hz: float
    pair_rate_hz: float
    random_pair_rate_hz: float
    genuine_pair_rate_hz: float
    n_hits: int
    exposure_module_s: float


def direct_times_at(positions: np.ndarray, truth: ak.Array, medium: Medium) -> np.ndarray:
    """Return the direct-light arrival time [ns] of the true hypothesis at ``positions`` (events × points)."""
    hypothesis = _Hypothesis.of(truth)
    delay, _ = hypothesis.direct_delay_ns(positions[None, :, :], (slice(None), None), medium)
    return hypothesis.t0[:, None] + delay


def background_rates(events: ak.Array, module_positions: np.ndarray, pmts_per_module: int, medium: Medium,
                     before_light_ns: float = 50.0, after_light_ns: float = 1000.0,
                     window_ns: float = L1_WINDOW_NS) -> BackgroundRates:
    """Return the background rates seen where the event's own light cannot be: hits earlier than
    ``before_light_ns`` ahead of the direct arrival time at their module, or later than
    ``after_light_ns`` after it.

    Each module's exposure runs from the event's first hit (the readout window's start) to its
    direct time minus ``before_light_ns``, and from its direct time plus ``after_light_ns`` to
    the event's last hit; ``module_positions`` are the centres of all the detector's modules,
    hit or not.
    """
    names = ["x", "y", "z", "t", "sensor_id"]
    hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
    start, end = hits.segment_min(hits["t"], np.nan)[:, None], hits.segment_max(hits["t"], np.nan)[:, None]
    direct = direct_times_at(module_positions, events.truth, medium)  # events × modules
    early_end = np.minimum(direct - before_light_ns, end)
    late_start = np.maximum(direct + after_light_ns, start)
    exposure_ns = np.clip(early_end - start, 0.0, None) + np.clip(end - late_start, 0.0, None)
    exposure_ns[~np.isfinite(exposure_ns)] = 0.0
    position = np.column_stack([hits["x"], hits["y"], hits["z"]])
    _, module = cKDTree(module_positions).query(position) if len(position) else (None, np.zeros(0, np.int64))
    event = hits.event_index
    background = (hits["t"] < early_end[event, module]) | (hits["t"] > late_start[event, module])
    e, m, t, s = event[background], module[background], hits["t"][background], hits["sensor_id"][background]
    order = np.lexsort((t, m, e))
    e, m, t, s = e[order], m[order], t[order], s[order]
    pairs = 0
    for shift in range(1, 8):  # pairs within a few ns: never more than a handful of hits apart
        same = (e[shift:] == e[:-shift]) & (m[shift:] == m[:-shift]) & (t[shift:] - t[:-shift] <= window_ns)
        pairs += int((same & (s[shift:] != s[:-shift])).sum())
    total_s = float(exposure_ns.sum()) * 1e-9
    singles = len(t) / (total_s * pmts_per_module) if total_s > 0 else np.nan
    module_rate = singles * pmts_per_module
    random = module_rate**2 * (1.0 - 1.0 / pmts_per_module) * window_ns * 1e-9
    measured = pairs / total_s if total_s > 0 else np.nan
    return BackgroundRates(float(singles), float(measured), float(random), float(measured - random), len(t), total_s)


def _before_light(events: ak.Array, column: str, medium: Medium, before_light_ns: float) -> np.ndarray:
    """Return ``column`` of the hits earlier than ``before_light_ns`` ahead of the true hypothesis's direct
    light: background single photo-electrons (⁴⁰K, dark counts)."""
    names = ["x", "y", "z", "t", column]
    hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
    residual, _ = hit_residuals(hits, events.truth, medium)
    return hits[column][residual < -before_light_ns]


def single_pe_tot_ns(events: ak.Array, medium: Medium, before_light_ns: float = 50.0) -> float:
    """Return the median ToT [ns] of hits earlier than ``before_light_ns`` ahead of the direct light:
    background single photo-electrons, whose median ToT is the ToT of one photo-electron at the
    median gain (the quantity KM3NeT tunes its PMTs on)."""
    tot = _before_light(events, "tot_ns", medium, before_light_ns)
    return float(np.median(tot)) if len(tot) else float("nan")


def feature_separation(a: pd.DataFrame, b: pd.DataFrame, features: Sequence[str]) -> pd.Series:
    """Return, per feature, the ROC AUC of that feature alone (folded to ≥ 0.5), largest first:
    which single quantity gives the simulation away."""
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    result = {}
    for name in features:
        x = np.concatenate([a[name].to_numpy(float), b[name].to_numpy(float)])
        finite = np.isfinite(x)
        if len(np.unique(y[finite])) < 2:
            continue
        auc = float(roc_auc_score(y[finite], x[finite]))
        result[name] = max(auc, 1.0 - auc)
    return pd.Series(result).sort_values(ascending=False)


def snapshot_margins_ns(events: ak.Array, quantile: float = 0.9) -> tuple[float, float]:
    """Return how far the readout window reaches before the first and after the last triggered hit [ns].

    Measured per event as (first triggered hit - first hit) and (last hit - last triggered hit);
    the background's random hits end up to ~1/rate short of the window's edges, so a high
    ``quantile`` over events is taken. NaN where the events carry no ``trig`` flags.
    """
    if "trig" not in events.hits.fields:
        return float("nan"), float("nan")
    t, trig = events.hits.t, events.hits.trig
    has = ak.to_numpy(ak.any(trig, axis=1))
    before = ak.to_numpy(ak.fill_none(ak.min(t[trig], axis=1) - ak.min(t, axis=1), np.nan)[has]).astype(float)
    after = ak.to_numpy(ak.fill_none(ak.max(t, axis=1) - ak.max(t[trig], axis=1), np.nan)[has]).astype(float)
    if not len(before):
        return float("nan"), float("nan")
    return float(np.quantile(before, quantile)), float(np.quantile(after, quantile))


def single_pe_charge_quantiles(events: ak.Array, medium: Medium, points: int = 21,
                               before_light_ns: float = 50.0) -> tuple[float, ...]:
    """Return the charge [pe] quantiles, at ``points`` evenly spaced probabilities, of hits earlier than
    ``before_light_ns`` ahead of the direct light: the single-photo-electron spectrum as recorded
    (above threshold), in the form DetectorResponse.spe_charge_quantiles takes."""
    charge = _before_light(events, "charge", medium, before_light_ns)
    if len(charge) < points:
        return ()
    return tuple(float(q) for q in np.quantile(charge, np.linspace(0.0, 1.0, points)))
