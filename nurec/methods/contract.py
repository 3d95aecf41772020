"""The method contract: what every reconstruction method is, says about itself, and refuses.

In the spirit of scikit-learn estimators and KServe's load/predict/describe, a method is
built with its options and the **detector** it will run on (a ``Geometry``: name, family,
medium and a hash of its sensors), ``describe()`` returns a ``MethodInfo`` (name, version,
what it estimates, the detectors it is valid for, whether and how it is trained), and
``reconstruct(events)`` returns one row per event in the one prediction schema
(``nurec.io.schema.PREDICTION_COLUMNS`` first).

A trained method is valid only for the detectors it was trained on: ``check_detector``
raises ``DetectorMismatch`` (one line naming both detectors and the command that trains a
model for the new one) and the registry calls it for every method it builds, so the CLI,
the evaluation and the service refuse alike.

Every method is also bounded in what one event may cost: ``EventLimits`` (hits and
distinct hit sensors per event), checked by the run loop (``nurec.methods.run``) before
the method sees the events, so an event over a limit fails alone, naming the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import awkward as ak
import numpy as np
import pandas as pd

from nurec.geometry import Geometry
from nurec.io.schema import EventProblem

ESTIMATES = ("direction", "energy", "angular_uncertainty", "p_track")
"""What a method can estimate; a method lists the ones it fills (the other columns stay NaN)."""


@dataclass(frozen=True)
class DetectorRef:
    """A detector as a method knows it: its name and the hash of its sensors ("" = not known)."""

    name: str
    geometry_hash: str = ""

    @classmethod
    def of(cls, detector: Geometry | DetectorRef | Mapping[str, Any] | str) -> DetectorRef:
        """Return the reference of a geometry, a ``{"name", "hash"}`` record or a bare name."""
        if isinstance(detector, DetectorRef):
            return detector
        if isinstance(detector, Geometry):
            return cls(detector.name, detector.hash)
        if isinstance(detector, Mapping):
            return cls(str(detector.get("name", "")), str(detector.get("hash") or detector.get("geometry_hash") or ""))
        return cls(str(detector))

    def matches(self, other: DetectorRef) -> bool:
        """Return True if ``other`` is this detector: same sensor hash when both know it, else same name."""
        if self.geometry_hash and other.geometry_hash:
            return self.geometry_hash == other.geometry_hash
        return self.name == other.name

    @property
    def label(self) -> str:
        """Return "name (hash)" or the name alone."""
        return f"{self.name} ({self.geometry_hash})" if self.geometry_hash else self.name

    def to_dict(self) -> dict[str, str]:
        """Return the reference as JSON-able data (the spelling model files and metadata use)."""
        return {"name": self.name, "hash": self.geometry_hash}


@dataclass(frozen=True)
class MethodInfo:
    """What a method says about itself (``describe()``); served as ModelInfo and written as provenance.

    ``detectors`` empty means the method runs on any detector (it reads hit positions from
    the events and takes the medium from the detector it was built with). ``training`` is
    the command that trains the method, with ``{detector}`` where a detector name goes.
    """

    name: str
    version: str
    description: str
    estimates: tuple[str, ...]
    detectors: tuple[DetectorRef, ...] = ()
    trained: bool = False
    training: str = ""
    energy_range_gev: tuple[float, float] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    def valid_for(self, detector: DetectorRef) -> bool:
        """Return True if the method may run on ``detector``."""
        if not self.trained:
            return True
        return any(known.matches(detector) for known in self.detectors)

    def training_command(self, detector: DetectorRef) -> str:
        """Return the command that trains this method for ``detector``."""
        return self.training.format(detector=detector.name) if self.training else "(no training command recorded)"

    def to_dict(self) -> dict[str, Any]:
        """Return the description as JSON-able data."""
        return {
            "name": self.name, "version": self.version, "description": self.description,
            "estimates": list(self.estimates), "detectors": [d.to_dict() for d in self.detectors],
            "trained": self.trained, "training": self.training,
            "energy_range_gev": list(self.energy_range_gev) if self.energy_range_gev else None,
            "metrics": dict(self.metrics),
        }


class DetectorMismatch(ValueError):
    """A trained method asked to run on a detector it was not trained for (one-line message)."""

    def __init__(self, info: MethodInfo, detector: DetectorRef) -> None:
        self.info = info
        self.detector = detector
        trained_for = ", ".join(d.label for d in info.detectors) or "no recorded detector"
        super().__init__(
            f"method '{info.name}' ({info.version}) was trained for {trained_for}, not {detector.label}; "
            f"train one for {detector.name}: {info.training_command(detector)}")

    def __reduce__(self):
        # Rebuilt from its arguments so it crosses process and Dask worker boundaries intact.
        return (type(self), (self.info, self.detector))


def check_detector(info: MethodInfo, detector: Geometry | DetectorRef | Mapping[str, Any] | str) -> None:
    """Raise DetectorMismatch if a trained method is not valid for ``detector``."""
    ref = DetectorRef.of(detector)
    if not info.valid_for(ref):
        raise DetectorMismatch(info, ref)


@dataclass(frozen=True)
class EventLimits:
    """The most one event may cost: checked before any method computes on it (0 = no limit).

    Work and memory per event grow with its hits and its distinct hit sensors (noise
    cleaning, graphs, fits). Defaults: 20,000 hits (the service's ``max_hits``) and 10,000
    distinct sensors (IceCube86 has 5,160 optical modules, so no IceCube86 event is refused
    for its sensors; a KM3NeT event would need hits on that many distinct PMTs).
    """

    max_hits_per_event: int = 20_000
    max_sensors_per_event: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_hits_per_event", "max_sensors_per_event"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"limits.{name}: must be an integer >= 0 (0 = no limit), got {value!r}")

    def problems(self, offsets: np.ndarray, sensor_id: np.ndarray | None) -> dict[int, EventProblem]:
        """Return {event index: problem} for the events over a limit, naming the limit and the value.

        ``offsets`` (n_events + 1) delimit each event's hits; ``sensor_id`` are the flat
        sensor ids of the hits, read only for events with more hits than
        ``max_sensors_per_event`` (None is fine when there are none).
        """
        counts = np.diff(np.asarray(offsets, dtype=np.int64))
        problems: dict[int, EventProblem] = {}
        if self.max_hits_per_event:
            for i in np.flatnonzero(counts > self.max_hits_per_event):
                problems[int(i)] = EventProblem(int(i), "hits", f"{counts[i]:,} hits exceeds "
                                                f"max_hits_per_event={self.max_hits_per_event:,}")
        if not self.max_sensors_per_event:
            return problems
        for i in np.flatnonzero(counts > self.max_sensors_per_event):
            if int(i) in problems or sensor_id is None:
                continue
            n_sensors = len(np.unique(sensor_id[offsets[i] : offsets[i + 1]]))
            if n_sensors > self.max_sensors_per_event:
                problems[int(i)] = EventProblem(int(i), "hits.sensor_id", f"{n_sensors:,} distinct sensors exceeds "
                                                f"max_sensors_per_event={self.max_sensors_per_event:,}")
        return problems


@runtime_checkable
class Method(Protocol):
    """What every registered method provides (built by its factory with ``detector=`` and options)."""

    name: str
    version: str

    def describe(self) -> MethodInfo:
        """Return what the method is, estimates and is valid for."""

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event (nurec.io.schema.PREDICTION_COLUMNS first)."""


def trained_for_record(detector: Geometry | DetectorRef | Mapping[str, Any] | str,
                       energy_range_gev: tuple[float, float] | None = None) -> dict[str, Any]:
    """Return the ``trained_for`` record a trained artifact stores (detectors and energy range)."""
    return {"detectors": [DetectorRef.of(detector).to_dict()],
            "energy_range_gev": list(energy_range_gev) if energy_range_gev else None}


def detectors_of_record(record: Mapping[str, Any] | None) -> tuple[DetectorRef, ...]:
    """Return the detectors of a ``trained_for`` record (empty if none is recorded)."""
    return tuple(DetectorRef.of(d) for d in (record or {}).get("detectors") or ())


def energy_range_of_record(record: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """Return the energy range [GeV] of a ``trained_for`` record, if recorded."""
    values = (record or {}).get("energy_range_gev")
    return (float(values[0]), float(values[1])) if values else None
