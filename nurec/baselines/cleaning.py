"""Noise-hit cleaning: keep hits that have a causally close partner in the same event.

Random noise hits are isolated in space and time; light from a muon or cascade lights
up neighbouring sensors within a short time. A hit is kept when another hit of the same
event on a different sensor lies within ``radius_m`` and ``window_ns``:
- ice (IceCube): 150 m and 1000 ns, the "seeded RT" cleaning radius and time of IceCube
  (Aartsen et al., JINST 9 (2014) P03009, Sec. 6.1).
- water (KM3NeT): 1 m and 10 ns, i.e. an L1 coincidence of two PMTs of one DOM
  (KM3NeT, Eur. Phys. J. C 82 (2022) 26), the same window the trigger uses.

Cost: events with few hit sensors (at most 128) check all their sensor pairs. Larger ones
bucket their sensors in cubes: fine cubes of diagonal ``radius_m`` (any two sensors of one
are close in space, so one sorted pass over times decides them) and coarse cubes of edge
``radius_m`` (partners sit in adjacent ones), with times looked up in sorted arrays. The
work is O(n log n) in the hit sensors plus the candidate pairs of adjacent coarse cubes
whose time windows meet and that still lack a partner; memory is bounded whatever the
event, since candidates are checked in chunks of ``_PAIRS_PER_CHUNK`` pairs: about 10 MB
at 20,000 hits on all 5,160 icecube86 sensors, where building every pair took 2 GB
(tests/test_baselines_cleaning.py, benchmarks/bench_event_cost.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from nurec.ragged import RaggedEvents

_CELL_MARGIN = 1e-5
"""Relative margin of the cube edges: fine cubes are this much smaller than radius/√3 (any two sensors
in one are within the radius despite rounding), coarse cubes this much larger than the radius
(partners are in the same or adjacent coarse cubes)."""
_MAX_CELL_INDEX = 2.0**30
"""Sensors further than this many fine cubes from the origin (6e8 m for water, 9e10 m for ice) are never
partners: beyond it float64 cube indices lose the precision the margin relies on."""
_SMALL_EVENT_SENSORS = 128
"""Events with at most this many hit sensors check all their sensor pairs (measured cheaper than the grid
below ~150 sensors; at most 128² pairs each, checked in chunks)."""
_PAIRS_PER_CHUNK = 1 << 17
"""Candidate pairs checked at once (a few MB of temporaries)."""
_N_NEIGHBOURS = 27
"""Coarse cubes looked up per sensor: offsets -1..1 along x, y and z."""
_SOURCES_PER_BLOCK = _PAIRS_PER_CHUNK // _N_NEIGHBOURS
"""Sensors whose neighbouring cubes are looked up at once."""


@dataclass(frozen=True)
class CleaningSettings:
    """Neighbourhood that makes a hit count as signal-like."""

    radius_m: float
    window_ns: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.radius_m) and self.radius_m > 0):
            raise ValueError(f"cleaning.radius_m: must be finite and > 0, got {self.radius_m}")
        if not (np.isfinite(self.window_ns) and self.window_ns >= 0):
            raise ValueError(f"cleaning.window_ns: must be finite and >= 0, got {self.window_ns}")


CLEANING = {
    "ice": CleaningSettings(radius_m=150.0, window_ns=1000.0),
    "water": CleaningSettings(radius_m=1.0, window_ns=10.0),
}


def isolated_hit_mask(flat: RaggedEvents, settings: CleaningSettings) -> np.ndarray:
    """Return True for hits on a sensor with a partner sensor (same event) within radius and window.

    Works on sensors, not pulses: each hit sensor of an event has a position (of its first
    pulse) and a time span [first, last] of its pulses, and two sensors are partners when
    their squared distance is <= ``radius_m``² and the gap between their spans is <=
    ``window_ns``. All pulses of a sensor share its verdict. Sensors with a non-finite
    position or time are never partners.
    """
    order = np.lexsort((flat["t"], flat["sensor_id"], flat.event_index))
    event, sensor = flat.event_index[order], flat["sensor_id"][order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (event[1:] != event[:-1]) | (sensor[1:] != sensor[:-1])
    group_of_sorted = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(order)) - 1
    sensors = _Sensors(event=event[starts], pos=flat["pos"][order[starts]],
                       t_first=flat["t"][order[starts]], t_last=flat["t"][order[ends]], settings=settings)
    keep = np.zeros(len(order), dtype=bool)
    keep[order] = sensors.partnered()[group_of_sorted]
    return keep


@functools.lru_cache(maxsize=_SMALL_EVENT_SENSORS + 1)
def _upper_pairs(n: int) -> np.ndarray:
    """Return the index pairs (2, n (n - 1) / 2) i < j of n items (read-only, cached)."""
    pairs = np.stack(np.triu_indices(n, 1)).astype(np.int64)
    pairs.flags.writeable = False
    return pairs


@dataclass
class _Sensors:
    """The hit sensors of a batch of events (in event order) and the partner search among them."""

    event: np.ndarray
    pos: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    settings: CleaningSettings

    def close(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Return whether sensors i[k] and j[k] are partners: the definition, in the columns' own arithmetic."""
        gap = np.maximum(self.t_first[j] - self.t_last[i], self.t_first[i] - self.t_last[j])
        close = gap <= self.settings.window_ns
        in_time = np.flatnonzero(close)  # distances only for pairs close in time (the cheaper test)
        a, b = i[in_time], j[in_time]
        close[in_time] = np.sum((self.pos[a] - self.pos[b]) ** 2, axis=1) <= self.settings.radius_m**2
        return close

    def mark(self, members: np.ndarray, i: np.ndarray, j: np.ndarray, found: np.ndarray) -> None:
        """Set ``found`` at i[k] and j[k] where sensors members[i[k]] and members[j[k]] are partners."""
        close = self.close(members[i], members[j])
        found[i[close]] = True
        found[j[close]] = True

    def partnered(self) -> np.ndarray:
        """Return True for each sensor with a partner."""
        found = np.zeros(len(self.event), dtype=bool)
        fine_m = self.settings.radius_m / np.sqrt(3.0) * (1.0 - _CELL_MARGIN)
        with np.errstate(invalid="ignore", over="ignore"):
            pos = np.asarray(self.pos, dtype=np.float64)
            usable = (np.all(np.abs(pos / fine_m) < _MAX_CELL_INDEX, axis=1)
                      & np.isfinite(self.t_first) & np.isfinite(self.t_last))
        members = np.flatnonzero(usable)
        per_event = np.bincount(self.event[members])
        small = per_event[self.event[members]] <= _SMALL_EVENT_SENSORS
        few, many = members[small], members[~small]
        if len(few) > 1:
            local = np.zeros(len(few), dtype=bool)  # index k is sensor few[k]
            self._all_pairs(few, local)
            found[few] = local
        if len(many) > 1:
            local = np.zeros(len(many), dtype=bool)
            self._grid_search(many, pos[many], fine_m, local)
            found[many] = local
        return found

    def _all_pairs(self, members: np.ndarray, local: np.ndarray) -> None:
        """Check every pair of sensors of each event (``members`` in event order), in chunks of events."""
        _, first, n = np.unique(self.event[members], return_index=True, return_counts=True)
        n_pairs = n.astype(np.int64) * (n - 1) // 2
        cumulative = np.cumsum(n_pairs)
        start = 0
        while start < len(n):
            done = cumulative[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(cumulative, done + _PAIRS_PER_CHUNK, side="right")))
            # Only the pairs i < j of each event: the upper triangle, cached per event size.
            pairs = [_upper_pairs(int(count)) + begin for count, begin in zip(n[start:stop], first[start:stop],
                                                                                strict=True) if count > 1]
            if pairs:
                a, b = np.concatenate(pairs, axis=1)
                self.mark(members, a, b, local)
            start = stop

    def _grid_search(self, members: np.ndarray, pos: np.ndarray, fine_m: float, local: np.ndarray) -> None:
        """Mark the sensors ``members`` (of events with many sensors) that have a partner.

        First within fine cubes (edge radius/√3: every pair close in space), then between
        sensors of adjacent coarse cubes (edge radius) whose time windows meet: every close
        pair has one sensor whose first time lies in the other's window [first - w, last + w],
        so looking up first times in windows from both sides finds it. Pairs whose two
        sensors are already found are not looked up.
        """
        event = self.event[members]
        t_first = np.asarray(self.t_first, dtype=np.float64)[members]
        t_last = np.asarray(self.t_last, dtype=np.float64)[members]
        fine = _Grid.of(event, np.floor(pos / fine_m).astype(np.int64))
        self._same_cube(members, fine.cell, t_first, t_last, local)
        coarse = _Grid.of(event, np.floor(pos / (self.settings.radius_m * (1.0 + _CELL_MARGIN))).astype(np.int64))
        by_cube_time = np.lexsort((t_first, coarse.cell))
        windows = _Windows(t_first, t_last, self.settings.window_ns)
        self._between_cubes(members, coarse, windows, by_cube_time, ~local, np.ones(len(members), bool), local)
        if not local.all():
            # Found sensors in reach of one still without a partner.
            reach = np.zeros(coarse.n_cells, dtype=bool)
            unfound = np.flatnonzero(~local)
            for block in range(0, len(unfound), _SOURCES_PER_BLOCK):
                cubes = coarse.neighbour_cells(unfound[block : block + _SOURCES_PER_BLOCK])
                reach[cubes[cubes >= 0]] = True
            self._between_cubes(members, coarse, windows, by_cube_time, local & reach[coarse.cell], ~local, local)

    def _same_cube(self, members: np.ndarray, cell: np.ndarray, t_first: np.ndarray, t_last: np.ndarray,
                   local: np.ndarray) -> None:
        """Mark sensors with a partner in their own fine cube (where every pair is close in space).

        In (cube, first time) order the best later candidate is the next sensor (smallest
        first time) and the best earlier one the earlier sensor with the latest last time:
        checking those two per sensor decides it.
        """
        order = np.lexsort((t_first, cell))
        n = len(order)
        cube = cell[order]
        after = np.flatnonzero(cube[1:] == cube[:-1])
        by_last = np.argsort(t_last[order], kind="stable")
        rank_last = np.empty(n, dtype=np.int64)
        rank_last[by_last] = np.arange(n)
        running = np.maximum.accumulate(cube * n + rank_last)  # latest last time so far, per cube
        earlier = np.flatnonzero(running[:-1] // n == cube[1:]) + 1
        for a, b in ((after, after + 1), (earlier, by_last[running[earlier - 1] % n])):
            self.mark(members, order[a], order[b], local)

    def _between_cubes(self, members: np.ndarray, grid: _Grid, windows: _Windows, by_cube_time: np.ndarray,
                       sources: np.ndarray, targets: np.ndarray, local: np.ndarray) -> None:
        """Mark close pairs (source, target) of adjacent cubes whose target first time is in the source window."""
        target_order = by_cube_time[targets[by_cube_time]]
        source_index = by_cube_time[sources[by_cube_time]]
        if len(target_order) == 0 or len(source_index) == 0:
            return
        first_sorted = np.sort(windows.first[target_order])
        width = len(target_order) + 1
        # Sorted keys (cube, rank of first time among targets): a window in a cube is one key range.
        keys = grid.cell[target_order] * width + np.searchsorted(first_sorted, windows.first[target_order])
        for block in range(0, len(source_index), _SOURCES_PER_BLOCK):
            src = source_index[block : block + _SOURCES_PER_BLOCK]
            cubes = grid.neighbour_cells(src)
            low, high = windows.of(src)
            base = np.where(cubes >= 0, cubes * width, -width)
            lo = np.searchsorted(keys, base + np.searchsorted(first_sorted, low, "left"))
            hi = np.searchsorted(keys, base + np.searchsorted(first_sorted, high, "right"))
            count = np.where(cubes >= 0, hi - lo, 0).ravel()
            for i, position in _chunked_ranges(np.tile(src, len(cubes)), lo.ravel(), count):
                j = target_order[position]
                other = i != j
                self.mark(members, i[other], j[other], local)


@dataclass
class _Windows:
    """Sensor time windows [first - w - slack, last + w + slack]; the slack absorbs rounding."""

    first: np.ndarray
    last: np.ndarray
    window_ns: float
    slack: float = field(init=False)

    def __post_init__(self) -> None:
        scale = max(float(np.max(np.abs(self.first), initial=0.0)), float(np.max(np.abs(self.last), initial=0.0)))
        self.slack = 1e-6 * (2.0 * scale + self.window_ns)

    def of(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (self.first[index] - self.window_ns - self.slack, self.last[index] + self.window_ns + self.slack)


@dataclass
class _Grid:
    """Cube of each sensor as a dense id over (event, cube x, cube y, cube z), and neighbour look-ups.

    The 4-D key is ranked one axis at a time (each step's key < n²), so no combined key overflows.
    """

    event: np.ndarray  # dense event rank
    cube: np.ndarray  # (n, 3) integer cube coordinates
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # distinct cube coordinates per axis
    levels: tuple[np.ndarray, np.ndarray, np.ndarray]  # distinct keys after adding x, y, z
    cell: np.ndarray

    @property
    def n_cells(self) -> int:
        return len(self.levels[2])

    @classmethod
    def of(cls, event: np.ndarray, cube: np.ndarray) -> _Grid:
        event = np.unique(event, return_inverse=True)[1].ravel()
        axes = tuple(np.unique(cube[:, a]) for a in range(3))
        key, levels = event, []
        for a in range(3):
            key = key * len(axes[a]) + np.searchsorted(axes[a], cube[:, a])
            level = np.unique(key)
            levels.append(level)
            key = np.searchsorted(level, key)
        return cls(event, cube, axes, tuple(levels), key)

    def neighbour_cells(self, index: np.ndarray) -> np.ndarray:
        """Return (27, len(index)) dense ids of the cubes at offsets -1..1 per axis (x slowest); -1 where empty.

        Offset-major, so that for sensors in cube order each offset's look-ups ascend (fast searchsorted).
        """
        steps = np.arange(-1, 2)[:, None]
        key = self.event[index][None, :]
        for a in range(3):
            rank = _lookup(self.axes[a], self.cube[index, a][None, :] + steps)  # (3, n)
            combined = np.where((key[:, None] >= 0) & (rank[None] >= 0), key[:, None] * len(self.axes[a]) + rank[None], -1)
            key = _lookup(self.levels[a], combined.reshape(-1, len(index)))
        return key


def _lookup(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return the position of each query in ``sorted_values`` (distinct), -1 where it is absent."""
    if len(sorted_values) == 0:
        return np.full(queries.shape, -1, dtype=np.int64)
    position = np.minimum(np.searchsorted(sorted_values, queries), len(sorted_values) - 1)
    return np.where(sorted_values[position] == queries, position, -1)


def _chunked_ranges(owner: np.ndarray, start: np.ndarray, count: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (owner, position) of every position in the ranges [start, start + count), at most
    ``_PAIRS_PER_CHUNK`` at a time (a range may be split)."""
    nonzero = count > 0
    owner, start, count = owner[nonzero], start[nonzero], count[nonzero]
    if len(count) == 0:
        return
    end = np.cumsum(count)
    begin = end - count
    for first in range(0, int(end[-1]), _PAIRS_PER_CHUNK):
        k = np.arange(first, min(first + _PAIRS_PER_CHUNK, int(end[-1])), dtype=np.int64)
        r = np.searchsorted(end, k, side="right")
        yield owner[r], start[r] + (k - begin[r])


def clean_hits(flat: RaggedEvents, medium_name: str, min_hits: int = 3,
               mask: np.ndarray | None = None) -> RaggedEvents:
    """Return the cleaned hits; events left with fewer than ``min_hits`` keep all their hits.

    ``mask``: the hits' ``isolated_hit_mask`` if already computed (it is not recomputed).
    """
    keep = (isolated_hit_mask(flat, CLEANING[medium_name]) if mask is None else mask).copy()
    kept_per_event = np.bincount(flat.event_index[keep], minlength=flat.n_events)
    keep |= (kept_per_event < min_hits)[flat.event_index]
    return flat.select(keep)
