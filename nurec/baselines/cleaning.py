"""Noise-hit cleaning: keep hits that have a causally close partner in the same event.

Random noise hits are isolated in space and time; light from a muon or cascade lights
up neighbouring sensors within a short time. A hit is kept when another hit of the same
event on a different sensor lies within ``radius_m`` and ``window_ns``:
- ice (IceCube): 150 m and 1000 ns, the "seeded RT" cleaning radius and time of IceCube
  (Aartsen et al., JINST 9 (2014) P03009, Sec. 6.1).
- water (KM3NeT): 1 m and 10 ns, i.e. an L1 coincidence of two PMTs of one DOM
  (KM3NeT, Eur. Phys. J. C 82 (2022) 26), the same window the trigger uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nurec.ragged import RaggedEvents

_MAX_PAIRS_PER_BLOCK = 4_000_000


@dataclass(frozen=True)
class CleaningSettings:
    """Neighbourhood that makes a hit count as signal-like."""

    radius_m: float
    window_ns: float


CLEANING = {
    "ice": CleaningSettings(radius_m=150.0, window_ns=1000.0),
    "water": CleaningSettings(radius_m=1.0, window_ns=10.0),
}


def isolated_hit_mask(flat: RaggedEvents, settings: CleaningSettings) -> np.ndarray:
    """Return True for hits on a sensor with a partner sensor (same event) within radius and window.

    Works on sensors, not pulses: each hit sensor of an event has a time span [first, last]
    of its pulses, and two sensors are partners when closer than ``radius_m`` and their
    spans are within ``window_ns``. All pulses of a sensor share its verdict. Vectorised
    over all sensor pairs of blocks of events (Σ n_sensors² pairs per block, bounded).
    """
    order = np.lexsort((flat["t"], flat["sensor_id"], flat.event_index))
    event, sensor = flat.event_index[order], flat["sensor_id"][order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (event[1:] != event[:-1]) | (sensor[1:] != sensor[:-1])
    group_of_sorted = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(order)) - 1
    groups = _Groups(
        event=event[starts], pos=flat["pos"][order[starts]],
        t_first=flat["t"][order[starts]], t_last=flat["t"][order[ends]],
        offsets=np.concatenate([[0], np.cumsum(np.bincount(event[starts], minlength=flat.n_events))]),
    )
    group_keep = np.zeros(len(starts), dtype=bool)
    pairs_per_event = np.diff(groups.offsets).astype(np.int64) ** 2
    first_event = 0
    while first_event < flat.n_events:
        cumulative = np.cumsum(pairs_per_event[first_event:])
        stop = first_event + max(1, int(np.searchsorted(cumulative, _MAX_PAIRS_PER_BLOCK, side="right")))
        stop = min(stop, flat.n_events)
        _mark_block(groups, first_event, stop, settings, group_keep)
        first_event = stop
    keep = np.zeros(len(order), dtype=bool)
    keep[order] = group_keep[group_of_sorted]
    return keep


@dataclass
class _Groups:
    event: np.ndarray
    pos: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    offsets: np.ndarray


def _mark_block(groups: _Groups, start: int, stop: int, settings: CleaningSettings, keep: np.ndarray) -> None:
    n = np.diff(groups.offsets[start:stop + 1])
    first = groups.offsets[start:stop]
    if n.sum() == 0:
        return
    # Each sensor g of an event with n sensors pairs with the n sensors of its event.
    member = np.arange(groups.offsets[start], groups.offsets[stop])
    reps = np.repeat(n, n)
    i = np.repeat(member, reps)
    base = np.repeat(np.repeat(first, n), reps)
    j = base + np.arange(len(i)) - np.repeat(np.cumsum(reps) - reps, reps)
    gap = np.maximum(groups.t_first[j] - groups.t_last[i], groups.t_first[i] - groups.t_last[j])
    close = (i != j) & (gap <= settings.window_ns)
    close &= np.sum((groups.pos[i] - groups.pos[j]) ** 2, axis=1) <= settings.radius_m**2
    keep[np.unique(i[close])] = True


def clean_hits(flat: RaggedEvents, medium_name: str, min_hits: int = 3,
               mask: np.ndarray | None = None) -> RaggedEvents:
    """Return the cleaned hits; events left with fewer than ``min_hits`` keep all their hits.

    ``mask``: the hits' ``isolated_hit_mask`` if already computed (it is not recomputed).
    """
    keep = (isolated_hit_mask(flat, CLEANING[medium_name]) if mask is None else mask).copy()
    kept_per_event = np.bincount(flat.event_index[keep], minlength=flat.n_events)
    keep |= (kept_per_event < min_hits)[flat.event_index]
    return flat.select(keep)
