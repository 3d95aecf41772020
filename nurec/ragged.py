"""Events as ragged columns: per-item columns (hits, pulses, nodes) grouped into events by offsets.

In the spirit of awkward's ListOffsetArray: ``offsets`` (int64, n_events + 1) delimit
each event's items inside flat numpy columns of equal length (1-D, or 2-D such as (n, 3)
positions); per-event columns (event ids, truth, event features) sit beside them. Every
operation is vectorised over events and items: gathers, concatenation, item selection and
per-event reductions (segment sums, minima, maxima) never loop in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import DTypeLike


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    """Return the int64 offsets (len(counts) + 1, starting at 0) of consecutive runs of ``counts`` items."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return the concatenation of arange(s, s + c) for each start s and count c (int64)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def segment_sum(values: np.ndarray, segment: np.ndarray, n_segments: int) -> np.ndarray:
    """Return the sums of ``values`` (1-D or (n, k)) per segment index, shape (n_segments, ...)."""
    values = np.asarray(values)
    if values.ndim == 1:
        return np.bincount(segment, weights=values, minlength=n_segments)
    if values.shape[1] == 0:
        return np.zeros((n_segments, 0))
    return np.stack([np.bincount(segment, weights=values[:, k], minlength=n_segments)
                     for k in range(values.shape[1])], axis=1)


@dataclass(frozen=True, eq=False)
class RaggedEvents:
    """Events whose items (hits, pulses, nodes) are rows of flat columns, delimited by ``offsets``.

    ``offsets``: int64, n_events + 1 entries, starting at 0 and non-decreasing; event i owns
    items offsets[i]:offsets[i + 1]. ``columns``: per-item arrays whose first axis has
    offsets[-1] entries. ``event_columns``: per-event arrays with n_events entries.
    """

    offsets: np.ndarray
    columns: dict[str, np.ndarray]
    event_columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or np.any(offsets[1:] < offsets[:-1]):
            raise ValueError("offsets: expected a non-decreasing 1-D array starting at 0")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "columns", dict(self.columns))
        object.__setattr__(self, "event_columns", dict(self.event_columns))
        for name, values in self.columns.items():
            if len(values) != offsets[-1]:
                raise ValueError(f"columns.{name}: {len(values)} rows, expected {offsets[-1]} (one per item)")
        for name, values in self.event_columns.items():
            if len(values) != len(offsets) - 1:
                raise ValueError(f"event_columns.{name}: {len(values)} rows, expected {len(offsets) - 1} (one per event)")

    @classmethod
    def from_counts(cls, counts: np.ndarray, columns: Mapping[str, np.ndarray],
                    event_columns: Mapping[str, np.ndarray] | None = None) -> RaggedEvents:
        """Return the events with ``counts`` items each, in order, over ``columns``."""
        return cls(offsets_from_counts(counts), dict(columns), dict(event_columns or {}))

    @classmethod
    def from_awkward(cls, lists: ak.Array, fields: Sequence[str],
                     dtypes: Mapping[str, DTypeLike] | None = None) -> RaggedEvents:
        """Return the record lists ``lists`` (e.g. ``events.hits``) as columns ``fields``.

        ``dtypes`` maps field names to the dtype of their column (others keep theirs);
        every column is a fresh numpy array.
        """
        dtypes = dtypes or {}
        direct = _list_offset_columns(lists, fields)
        if direct is not None:  # the common layout: read the buffers, no awkward call per field
            offsets, flat = direct
            return cls(offsets, {name: flat[name].astype(dtypes.get(name, flat[name].dtype)) for name in fields})
        offsets = offsets_from_counts(ak.to_numpy(ak.num(lists, axis=1)))
        columns = {}
        for name in fields:
            values = ak.to_numpy(ak.flatten(lists[name], axis=1))
            columns[name] = values.astype(dtypes.get(name, values.dtype))
        return cls(offsets, columns)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, name: str) -> np.ndarray:
        """Return the per-item column ``name``."""
        return self.columns[name]

    @property
    def n_events(self) -> int:
        """Return the number of events."""
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        """Return the number of items of all events together."""
        return int(self.offsets[-1])

    @cached_property
    def counts(self) -> np.ndarray:
        """Return the number of items of each event (int64)."""
        return np.diff(self.offsets)

    @property
    def starts(self) -> np.ndarray:
        """Return the index of each event's first item (its end if it has none)."""
        return self.offsets[:-1]

    @cached_property
    def event_index(self) -> np.ndarray:
        """Return the event of each item (int64)."""
        return np.repeat(np.arange(self.n_events, dtype=np.int64), self.counts)

    def event_slice(self, event: int) -> slice:
        """Return the slice of the items of event ``event`` in the columns."""
        return slice(int(self.offsets[event]), int(self.offsets[event + 1]))

    def take(self, index: np.ndarray | Sequence[int]) -> RaggedEvents:
        """Return the events at positions ``index``, in that order (repeats allowed)."""
        index = np.asarray(index, dtype=np.int64)
        counts = self.counts[index]
        items = ranges(self.offsets[:-1][index], counts)
        return type(self)(offsets_from_counts(counts), {k: v[items] for k, v in self.columns.items()},
                          {k: v[index] for k, v in self.event_columns.items()})

    def select(self, item_mask: np.ndarray) -> RaggedEvents:
        """Return the items where ``item_mask`` is True; every event stays, with fewer items."""
        item_mask = np.asarray(item_mask, dtype=bool)
        counts = np.bincount(self.event_index[item_mask], minlength=self.n_events)
        return type(self)(offsets_from_counts(counts), {k: v[item_mask] for k, v in self.columns.items()},
                          self.event_columns)

    @staticmethod
    def concatenate(parts: Sequence[RaggedEvents]) -> RaggedEvents:
        """Return the events of ``parts`` one after the other (columns of the first part, by name)."""
        if not parts:
            raise ValueError("concatenate: no parts (the columns would be unknown)")
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return type(first)(
            offsets_from_counts(np.concatenate([p.counts for p in parts])),
            {k: np.concatenate([p.columns[k] for p in parts]) for k in first.columns},
            {k: np.concatenate([p.event_columns[k] for p in parts]) for k in first.event_columns},
        )

    def with_event_columns(self, **event_columns: np.ndarray) -> RaggedEvents:
        """Return the same events with per-event columns added or replaced."""
        return type(self)(self.offsets, self.columns, {**self.event_columns, **event_columns})

    def segment_sum(self, values: np.ndarray) -> np.ndarray:
        """Return the per-event sums of per-item ``values`` (1-D or (n_items, k))."""
        return segment_sum(values, self.event_index, self.n_events)

    def segment_min(self, values: np.ndarray, empty: Any = np.inf) -> np.ndarray:
        """Return the per-event minima of per-item ``values`` (NaN propagates); ``empty`` for events without items."""
        return self._segment_reduce(np.minimum, values, empty)

    def segment_max(self, values: np.ndarray, empty: Any = -np.inf) -> np.ndarray:
        """Return the per-event maxima of per-item ``values`` (NaN propagates); ``empty`` for events without items."""
        return self._segment_reduce(np.maximum, values, empty)

    def _segment_reduce(self, ufunc: np.ufunc, values: np.ndarray, empty: Any) -> np.ndarray:
        values = np.asarray(values)
        dtype = np.result_type(values.dtype, np.asarray(empty).dtype)
        out = np.full((self.n_events, *values.shape[1:]), empty, dtype=dtype)
        filled = self.counts > 0
        if filled.any():
            out[filled] = ufunc.reduceat(values, self.offsets[:-1][filled], axis=0)
        return out

    def list_layout(self, columns: Sequence[str] | None = None) -> ak.contents.ListOffsetArray:
        """Return the awkward layout of the events' item records (fields ``columns``, default all)."""
        names = list(self.columns) if columns is None else list(columns)
        records = ak.contents.RecordArray([numpy_layout(self.columns[k]) for k in names], names,
                                          length=self.n_items)
        return ak.contents.ListOffsetArray(ak.index.Index64(self.offsets), records)

    def to_awkward(self, list_field: str = "hits", columns: Sequence[str] | None = None,
                   event_fields: Sequence[str] | None = None) -> ak.Array:
        """Return the events as an awkward record array of ``event_fields`` and the item lists.

        ``event_fields`` (default: all event columns, then ``list_field``) orders the record;
        it may name ``list_field`` to place the item lists, else they come last. An event
        column named "a.b" becomes field b of a nested record a (e.g. "truth.energy").
        With the default ``list_field`` "hits" and the schema's hit columns and event ids this
        is the nurec event schema.
        """
        names = [*self.event_columns, list_field] if event_fields is None else list(event_fields)
        if list_field not in names:
            names.append(list_field)
        top: list[str] = []
        nested: dict[str, list[str]] = {}
        for name in names:
            head, _, tail = name.partition(".")
            if tail:
                nested.setdefault(head, []).append(name)
            if head not in top:
                top.append(head)
        contents = []
        for name in top:
            if name == list_field:
                contents.append(self.list_layout(columns))
            elif name in nested:
                inner = nested[name]
                contents.append(ak.contents.RecordArray(
                    [numpy_layout(self.event_columns[k]) for k in inner], [k.partition(".")[2] for k in inner],
                    length=self.n_events))
            else:
                contents.append(numpy_layout(self.event_columns[name]))
        return ak.Array(ak.contents.RecordArray(contents, top, length=self.n_events))


def numpy_layout(values: np.ndarray) -> ak.contents.Content:
    """Return the awkward layout of a numpy column (numpy strings become awkward strings)."""
    if values.dtype.kind == "U":
        return ak.to_layout(ak.from_numpy(values))
    return ak.contents.NumpyArray(values)


def _list_offset_columns(lists: ak.Array, fields: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Return (offsets from 0, {field: flat values, a view}) of lists stored as offsets over records of plain arrays.

    That is how events read from Parquet or built by the simulator hold their hits, and
    slicing keeps it; other layouts (a boolean selection, an option type) return None,
    for ak.flatten. Reading the buffers costs microseconds where ak.flatten costs ~0.2 ms
    per field, which is most of a single-event call's overhead.
    """
    layout = ak.to_layout(lists)
    if not isinstance(layout, ak.contents.ListOffsetArray) or not isinstance(layout.content, ak.contents.RecordArray):
        return None
    offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    flat = {}
    for name in fields:
        if name not in layout.content.fields:
            return None
        column = layout.content.content(name)
        if not isinstance(column, ak.contents.NumpyArray) or column.data.ndim != 1 or len(column.data) < stop:
            return None
        flat[name] = np.asarray(column.data)[start:stop]
    return offsets - start, flat
