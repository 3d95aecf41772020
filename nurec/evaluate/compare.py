"""Methods compared on the same events: paired bootstrap ratios and a verdict per task.

A task (track direction, cascade direction, energy, uncertainty calibration, classification)
has one number per method where lower is better: a "loss" such as the median angular error.
Two methods are compared on the events both reconstructed (fit ok, the task's inputs finite):
the ratio of their losses on those events, with a percentile-bootstrap interval from
resampling those events jointly (paired, seeded). The best method of a task is the one that
wins the most of its paired comparisons (ties: the lower loss on its own events); the verdict
says by how much it beats the runner-up (the closest of its comparisons) and on which events.

Methods with fewer than ``min_events_per_bin`` usable events in a task, and comparisons on
fewer common events, are listed but never decide a verdict.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate import metrics as m
from nurec.evaluate.quality import EvaluationSettings, MethodResult, event_weights
from nurec.io.schema import FIT_OK

Columns = dict[str, np.ndarray]
"""Per-event inputs of a task's loss; arrays of shape (..., n events), leading axes = bootstrap replicas."""


def _rows_quantile(values: np.ndarray, q: float, weights: np.ndarray | None) -> np.ndarray:
    """Return the ``q`` quantile along the last axis (weighted row by row when ``weights``)."""
    if weights is None:
        return np.quantile(values, q, axis=-1)
    flat_v, flat_w = values.reshape(-1, values.shape[-1]), weights.reshape(-1, weights.shape[-1])
    out = np.array([m.weighted_quantile(v, q, w) for v, w in zip(flat_v, flat_w, strict=True)])
    return out.reshape(values.shape[:-1])


def median_loss(columns: Columns) -> np.ndarray:
    """Return the median of ``value`` (e.g. angular error [deg])."""
    return _rows_quantile(columns["value"], 0.5, columns.get("weight"))


def absolute_q68_loss(columns: Columns) -> np.ndarray:
    """Return the 68% quantile of |value| (e.g. |log10(E_reco/E_true)|: bias and spread together)."""
    return _rows_quantile(np.abs(columns["value"]), m.CONTAINMENT, columns.get("weight"))


def miscalibration_loss(columns: Columns) -> np.ndarray:
    """Return max(s, 1/s), s = 68% quantile of ``value`` = error / predicted 68% radius (1: calibrated)."""
    s = _rows_quantile(columns["value"], m.CONTAINMENT, columns.get("weight"))
    with np.errstate(divide="ignore"):
        return np.maximum(s, 1.0 / s)


def misranking_loss(columns: Columns) -> np.ndarray:
    """Return 1 - AUC of ``value`` (p_track) for ``label`` (is_track): the share of track-cascade pairs
    ranked the wrong way round."""
    if columns.get("weight") is None:
        return 1.0 - m.rank_auc(columns["value"], columns["label"])
    flat = [(v, y, w) for v, y, w in zip(*(columns[k].reshape(-1, columns[k].shape[-1])
                                           for k in ("value", "label", "weight")), strict=True)]
    auc = np.array([m.roc_auc(v, y, w)[2] for v, y, w in flat])
    return (1.0 - auc).reshape(columns["value"].shape[:-1])


@dataclass(frozen=True)
class Task:
    """What one verdict is about: which events, which per-event value, which loss (lower is better)."""

    key: str
    title: str
    loss_name: str  # short, for sentences
    unit: str
    loss_definition: str
    events_noun: str  # what the events are, for sentences ("true tracks")
    selection: str  # which events count, exactly
    loss: Callable[[Columns], np.ndarray]
    value: Callable[[pd.DataFrame], np.ndarray]
    events: Callable[[pd.DataFrame], np.ndarray]

    def sample(self, result: MethodResult) -> pd.DataFrame:
        """Return the usable events of ``result`` for this task, indexed by event_id: value (+ label, weight)."""
        per_event = result.per_event
        value = self.value(per_event)
        usable = self.events(per_event) & (per_event["fit_status"] == FIT_OK).to_numpy() & np.isfinite(value)
        table = pd.DataFrame({"value": value[usable], "label": per_event["is_track"].to_numpy(bool)[usable]},
                             index=per_event["event_id"].to_numpy()[usable])
        weights = event_weights(per_event, usable)
        if weights is not None:
            table["weight"] = weights
        return table


def _all(per_event: pd.DataFrame) -> np.ndarray:
    return np.ones(len(per_event), dtype=bool)


def _tracks(per_event: pd.DataFrame) -> np.ndarray:
    return per_event["is_track"].to_numpy(bool)


def _cascades(per_event: pd.DataFrame) -> np.ndarray:
    return ~per_event["is_track"].to_numpy(bool)


def _error_over_radius(per_event: pd.DataFrame) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return per_event["angular_error_deg"].to_numpy(float) / per_event["angular_uncertainty_deg"].to_numpy(float)


_FIT_OK = "fit_status ok and "

TASKS: tuple[Task, ...] = (
    Task("track_direction", "Track direction", "median angular error", "deg",
         "median angle between reconstructed and true direction", "true tracks",
         f"truth.is_track; {_FIT_OK}a finite angular error",
         median_loss, lambda e: e["angular_error_deg"].to_numpy(float), _tracks),
    Task("cascade_direction", "Cascade direction", "median angular error", "deg",
         "median angle between reconstructed and true direction", "true cascades",
         f"not truth.is_track; {_FIT_OK}a finite angular error",
         median_loss, lambda e: e["angular_error_deg"].to_numpy(float), _cascades),
    Task("energy", "Energy", "68% quantile of |log10(E_reco/E_true)|", "dex",
         "68% quantile of |log10(E_reco/E_true)|: bias and spread together", "events",
         f"all events; {_FIT_OK}finite positive E_reco",
         absolute_q68_loss, lambda e: e["log10_energy_ratio"].to_numpy(float), _all),
    Task("uncertainty_calibration", "Uncertainty calibration", "miscalibration factor", "",
         "max(s, 1/s), s = 68% quantile of angular error / angular_uncertainty_deg: 1 when calibrated, "
         "2 when the radii are 2x too small or too large", "events",
         f"all events; {_FIT_OK}finite angular error and angular_uncertainty_deg",
         miscalibration_loss, _error_over_radius, _all),
    Task("classification", "Track/cascade classification", "1 - AUC", "",
         "1 - ROC AUC of p_track for true tracks: the share of track-cascade pairs ranked the wrong way round",
         "events", f"all events; {_FIT_OK}a finite p_track",
         misranking_loss, lambda e: e["p_track"].to_numpy(float), _all),
)
"""The tasks a report gives a verdict on, in display order."""


def _columns(sample: pd.DataFrame) -> Columns:
    return {key: sample[key].to_numpy() for key in sample.columns}


def _pair_seed(settings: EvaluationSettings, *names: str) -> int:
    """Return a bootstrap seed fixed by the settings' seed and the names (not by their order in a report)."""
    return settings.seed + zlib.crc32(":".join(names).encode()) % 1_000_000


def ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """Return numerator / denominator: inf where only the denominator is 0, 1 where both are (equal losses)."""
    num, den = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((num == 0) & (den == 0), 1.0, num / den)


def ratio_interval(ratios: np.ndarray, confidence: float) -> tuple[float, float]:
    """Return the central ``confidence`` range of bootstrap ratios (empirical quantiles, so inf stays inf)."""
    r = np.asarray(ratios, dtype=np.float64)
    r = r[~np.isnan(r)]
    if len(r) == 0:
        return np.nan, np.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(r, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def paired_ratio(task: Task, sample_a: pd.DataFrame, sample_b: pd.DataFrame, settings: EvaluationSettings,
                 seed: int) -> dict[str, Any]:
    """Return the losses of a and b on the events both have and the ratio b / a with its bootstrap interval.

    Resampling draws the common events with replacement and evaluates both methods on the
    same draw, so event-to-event differences in difficulty cancel in the ratio.
    """
    common = sample_a.index.intersection(sample_b.index).sort_values()
    a, b = _columns(sample_a.loc[common]), _columns(sample_b.loc[common])
    out: dict[str, Any] = {"n_events": int(len(common)), "loss_a": np.nan, "loss_b": np.nan,
                           "ratio_b_to_a": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan}
    if len(common) == 0:
        return out
    loss_a, loss_b = float(task.loss(a)), float(task.loss(b))
    ratios = [ratio(task.loss({k: v[idx] for k, v in b.items()}), task.loss({k: v[idx] for k, v in a.items()}))
              for idx in m.bootstrap_resamples(len(common), settings.n_bootstrap, seed)]
    low, high = ratio_interval(np.concatenate(ratios), settings.confidence)
    out.update(loss_a=loss_a, loss_b=loss_b, ratio_b_to_a=float(ratio(loss_b, loss_a)), ratio_ci_low=low,
               ratio_ci_high=high)
    return out


def compare_pair(task: Task, a: MethodResult, b: MethodResult, samples: dict[str, pd.DataFrame],
                 settings: EvaluationSettings) -> dict[str, Any]:
    """Return the paired comparison of two methods on ``task``, written with the better one as ``method_a``."""
    first = paired_ratio(task, samples[a.name], samples[b.name], settings, _pair_seed(settings, task.key, a.name, b.name))
    names = (a.name, b.name)
    if first["ratio_b_to_a"] < 1.0:  # b is the better one: flip
        names = (b.name, a.name)
        first.update(loss_a=first["loss_b"], loss_b=first["loss_a"], ratio_b_to_a=float(ratio(1.0, first["ratio_b_to_a"])),
                     ratio_ci_low=float(ratio(1.0, first["ratio_ci_high"])),
                     ratio_ci_high=float(ratio(1.0, first["ratio_ci_low"])))
    return {"method_a": names[0], "method_b": names[1], **first,
            "low_stats": bool(first["n_events"] < settings.min_events_per_bin),
            "decisive": bool(first["ratio_ci_low"] > 1.0)}


@dataclass
class TaskOutcome:
    """One task's verdict and its paired comparisons."""

    verdict: dict[str, Any]
    comparisons: list[dict[str, Any]]


def _subsample_note(names: Sequence[str], subsampled: dict[str, int], n_events: int) -> str:
    notes = [f"{name} ran on {subsampled[name]} of {n_events} events" for name in names if name in subsampled]
    return f" ({'; '.join(notes)})" if notes else ""


def judge_task(task: Task, results: Sequence[MethodResult], settings: EvaluationSettings,
               subsampled: dict[str, int] | None = None, n_events: int = 0) -> TaskOutcome:
    """Return the verdict of ``task`` and every paired comparison between its eligible methods.

    ``subsampled``: methods run on fewer events than the data set has -> how many (said in the selection).
    """
    subsampled = subsampled or {}
    samples = {r.name: task.sample(r) for r in results}
    estimating = [r for r in results if len(samples[r.name])]
    eligible = [r for r in estimating if len(samples[r.name]) >= settings.min_events_per_bin]
    excluded = {r.name: f"{len(samples[r.name])} usable events, fewer than {settings.min_events_per_bin}"
                for r in estimating if r not in eligible}
    comparisons = [compare_pair(task, a, b, samples, settings) for a, b in combinations(eligible, 2)]
    verdict: dict[str, Any] = {"task": task.key, "title": task.title, "loss": task.loss_name, "unit": task.unit,
                               "loss_definition": task.loss_definition, "selection": task.selection,
                               "lower_is_better": True, "confidence": settings.confidence, "excluded": excluded,
                               "candidates": [r.name for r in eligible], "best": None}
    if not eligible:
        why = "; ".join(f"{k}: {v}" for k, v in excluded.items()) or "no method estimates it"
        verdict["statement"] = (f"{task.title}: no verdict, no method has {settings.min_events_per_bin} or more "
                                f"usable {task.events_noun} ({why}).")
        return TaskOutcome(verdict, comparisons)
    own_loss = {r.name: float(task.loss(_columns(samples[r.name]))) for r in eligible}
    best = _best_method(eligible, comparisons, own_loss)
    verdict.update(best=best, best_loss=own_loss[best], best_n_events=int(len(samples[best])))
    verdict.update(_runner_up(best, comparisons))
    verdict["statement"] = _statement(task, verdict, settings, subsampled, n_events)
    return TaskOutcome(verdict, comparisons)


def _best_method(eligible: Sequence[MethodResult], comparisons: Sequence[dict[str, Any]],
                 own_loss: dict[str, float]) -> str:
    """Return the method with the most paired wins (on enough events); ties: the lower loss on its own events."""
    wins = {r.name: 0 for r in eligible}
    for c in comparisons:
        if not c["low_stats"] and c["ratio_b_to_a"] > 1.0:
            wins[c["method_a"]] += 1
    return min(wins, key=lambda name: (-wins[name], own_loss[name] if np.isfinite(own_loss[name]) else np.inf, name))


def _runner_up(best: str, comparisons: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the verdict fields of the closest competitor of ``best`` (the smallest paired ratio to it)."""
    mine = []
    for c in comparisons:
        if c["low_stats"] or best not in (c["method_a"], c["method_b"]):
            continue
        flip = c["method_b"] == best
        value = float(ratio(1.0, c["ratio_b_to_a"])) if flip else c["ratio_b_to_a"]
        low, high = ((float(ratio(1.0, c["ratio_ci_high"])), float(ratio(1.0, c["ratio_ci_low"]))) if flip
                     else (c["ratio_ci_low"], c["ratio_ci_high"]))
        other = c["method_a"] if flip else c["method_b"]
        mine.append((value, other, low, high, c))
    if not mine:
        return {"runner_up": None}
    value, other, low, high, c = min(mine, key=lambda item: (item[0] if not np.isnan(item[0]) else np.inf, item[1]))
    best_loss, other_loss = (c["loss_b"], c["loss_a"]) if c["method_b"] == best else (c["loss_a"], c["loss_b"])
    return {"runner_up": other, "ratio": value, "ratio_ci_low": low, "ratio_ci_high": high,
            "n_events_compared": c["n_events"], "best_loss_compared": best_loss, "runner_up_loss_compared": other_loss,
            "decisive": bool(low > 1.0)}


def _statement(task: Task, verdict: dict[str, Any], settings: EvaluationSettings, subsampled: dict[str, int],
               n_events: int) -> str:
    """Return the verdict in one sentence: who, by how much, on which events."""
    best = verdict["best"]
    unit = f" {task.unit}" if task.unit else ""
    head = (f"{task.title}: {best} is best, {task.loss_name} {verdict['best_loss']:.3g}{unit} "
            f"on its {verdict['best_n_events']} {task.events_noun}")
    if verdict.get("runner_up") is None:
        return head + " (no other method to compare with on enough events)."
    percent = round(100 * settings.confidence)
    interval = f"[{verdict['ratio_ci_low']:.2f}, {verdict['ratio_ci_high']:.2f}]"
    significance = "" if verdict["decisive"] else f"; the {percent}% interval includes 1: not a clear win"
    return (f"{head}; the runner-up {verdict['runner_up']}'s is {verdict['ratio']:.2f}x "
            f"({percent}% interval {interval}) on the {verdict['n_events_compared']} {task.events_noun} both "
            f"reconstructed{_subsample_note([best, verdict['runner_up']], subsampled, n_events)}{significance}.")


def judge_all(results: Sequence[MethodResult], settings: EvaluationSettings, subsampled: dict[str, int] | None = None,
              n_events: int = 0) -> dict[str, TaskOutcome]:
    """Return every task's verdict and paired comparisons (TASKS order)."""
    return {task.key: judge_task(task, results, settings, subsampled, n_events) for task in TASKS}
