"""Detector geometries: one API for built-in detectors and user-supplied tables.

A geometry is a set of sensors (PMTs) grouped into optical modules (DOMs) on strings
(detection units). IceCube-like detectors have one downward PMT per module; KM3NeT-like
detectors have 31 3-inch PMTs per module. Positions in metres, centred on the array.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from nurec.io.detx import DetxDetector, DetxError, parse_detx
from nurec.io.files import write_atomic

# IceCube coordinates have their origin 1948.07 m below the surface
# (IceCube Collaboration, JINST 12 (2017) P03012, "The IceCube Neutrino Observatory:
# instrumentation and online systems").
ICECUBE_ORIGIN_DEPTH_M = 1948.07


class GeometryError(ValueError):
    """A geometry cannot be built or loaded; the message names the problem."""


@dataclass(frozen=True, eq=False)
class Geometry:
    """Sensor positions and pointing of one detector.

    Attributes are per sensor arrays of equal length: ``sensor_id`` (int), ``position``
    (n, 3) [m], ``direction`` (n, 3) unit PMT pointing, ``module_id`` (optical module),
    ``string_id``, ``floor`` (module index along its string, 0 = lowest).
    ``family`` is "icecube" (single PMT, ice) or "km3net" (31 PMTs, sea water).
    """

    name: str
    family: str
    sensor_id: np.ndarray
    position: np.ndarray
    direction: np.ndarray
    module_id: np.ndarray
    string_id: np.ndarray
    floor: np.ndarray
    relative_efficiency: np.ndarray | None = None
    trigger_subarray: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.sensor_id)
        for name in ("position", "direction"):
            arr = getattr(self, name)
            if arr.shape != (n, 3):
                raise GeometryError(f"{self.name}: {name} has shape {arr.shape}, expected ({n}, 3)")
        for name in ("module_id", "string_id", "floor", "relative_efficiency", "trigger_subarray"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise GeometryError(f"{self.name}: {name} has {len(getattr(self, name))} entries, expected {n}")
        if not np.all(np.isfinite(self.position)):
            raise GeometryError(f"{self.name}: non-finite sensor position")
        if len(np.unique(self.sensor_id)) != n:
            raise GeometryError(f"{self.name}: sensor_id values are not unique")
        if self.family not in ("icecube", "km3net"):
            raise GeometryError(f"{self.name}: unknown family '{self.family}' (icecube or km3net)")

    @property
    def efficiency(self) -> np.ndarray:
        """Return each sensor's detection efficiency relative to the family's standard sensor (1 if not set)."""
        if self.relative_efficiency is None:
            return np.ones(len(self.sensor_id))
        return np.asarray(self.relative_efficiency, dtype=float)

    @property
    def subarray(self) -> np.ndarray:
        """Return a mask of the sensors of the low-threshold trigger subarray (DeepCore); none if not set."""
        if self.trigger_subarray is None:
            return np.zeros(len(self.sensor_id), dtype=bool)
        return np.asarray(self.trigger_subarray, dtype=bool)

    @property
    def medium(self) -> str:
        """Return "ice" for IceCube-like detectors, "water" for KM3NeT-like ones."""
        return "ice" if self.family == "icecube" else "water"

    @property
    def n_sensors(self) -> int:
        return len(self.sensor_id)

    @property
    def pmts_per_module(self) -> int:
        return 31 if self.family == "km3net" else 1

    def _modules(self) -> tuple[np.ndarray, np.ndarray]:
        if "modules" not in self._cache:
            unique, first, inverse = np.unique(self.module_id, return_index=True, return_inverse=True)
            self._cache["modules"] = (first, inverse)
        return self._cache["modules"]

    @property
    def sensor_module_index(self) -> np.ndarray:
        """Return, for each sensor, the index (0..n_modules-1) of its module."""
        return self._modules()[1]

    @property
    def module_position(self) -> np.ndarray:
        """Return module centre positions (n_modules, 3) [m] (mean of its PMTs)."""
        if "module_position" not in self._cache:
            index = self.sensor_module_index
            n_modules = index.max() + 1
            sums = np.zeros((n_modules, 3))
            np.add.at(sums, index, self.position)
            self._cache["module_position"] = sums / np.bincount(index, minlength=n_modules)[:, None]
        return self._cache["module_position"]

    @property
    def n_modules(self) -> int:
        return len(self.module_position)

    @property
    def module_string(self) -> np.ndarray:
        """Return the string id of each module."""
        return self.string_id[self._modules()[0]]

    @property
    def module_floor(self) -> np.ndarray:
        """Return the floor (index along the string) of each module."""
        return self.floor[self._modules()[0]]

    @property
    def center(self) -> np.ndarray:
        """Return the centre of the instrumented volume [m] (midpoint of the bounding box)."""
        if "center" not in self._cache:
            self._cache["center"] = 0.5 * (self.position.min(axis=0) + self.position.max(axis=0))
        return self._cache["center"].copy()

    @property
    def radius_m(self) -> float:
        """Return the radius of the vertical cylinder around the centre holding all sensors [m]."""
        if "radius_m" not in self._cache:
            self._cache["radius_m"] = float(np.max(np.hypot(*(self.position[:, :2] - self.center[:2]).T)))
        return self._cache["radius_m"]

    @property
    def height_m(self) -> float:
        """Return the vertical extent of the sensors [m]."""
        return float(np.ptp(self.position[:, 2]))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Return whether each point [m] (shape (n, 3)) lies inside the instrumented volume.

        The volume is the prism over the convex hull of the sensors' horizontal positions,
        between the lowest and the highest sensor: an event whose vertex lies in it is
        "contained" (its light starts among the sensors).
        """
        from scipy.spatial import Delaunay

        points = np.atleast_2d(np.asarray(points, dtype=float))
        if "hull_2d" not in self._cache:
            xy = np.unique(np.round(self.position[:, :2], 3), axis=0)
            self._cache["hull_2d"] = Delaunay(xy) if len(xy) >= 3 else None
        hull = self._cache["hull_2d"]
        z_lo, z_hi = self.position[:, 2].min(), self.position[:, 2].max()
        inside_z = (points[:, 2] >= z_lo) & (points[:, 2] <= z_hi)
        if hull is None:
            return np.zeros(len(points), dtype=bool)
        return inside_z & (hull.find_simplex(points[:, :2]) >= 0)

    def path_length_inside(self, start: np.ndarray, direction: np.ndarray, length_m: np.ndarray) -> np.ndarray:
        """Return the length [m] of each segment start + s·direction, 0 ≤ s ≤ length_m, inside the
        instrumented volume (the prism of ``contains``): a muon's length in the detector."""
        from scipy.spatial import ConvexHull

        start = np.atleast_2d(np.asarray(start, dtype=float))
        direction = np.atleast_2d(np.asarray(direction, dtype=float))
        low = np.zeros(len(start))
        high = np.broadcast_to(np.asarray(length_m, dtype=float), low.shape).copy()
        if "hull_planes" not in self._cache:
            xy = np.unique(np.round(self.position[:, :2], 3), axis=0)
            self._cache["hull_planes"] = ConvexHull(xy).equations if len(xy) >= 3 else None
        planes = self._cache["hull_planes"]
        if planes is None:
            return np.zeros(len(start))
        z_lo, z_hi = self.position[:, 2].min(), self.position[:, 2].max()
        # Each half-space n·x + c ≤ 0 (the hull's sides, the floor and the top) cuts the interval of s.
        normals = np.vstack([np.column_stack([planes[:, :2], np.zeros(len(planes))]), [[0, 0, -1.0], [0, 0, 1.0]]])
        offsets = np.concatenate([planes[:, 2], [z_lo, -z_hi]])
        for normal, offset in zip(normals, offsets, strict=True):
            at_start = start @ normal + offset
            rate = direction @ normal
            with np.errstate(divide="ignore", invalid="ignore"):
                crossing = -at_start / rate
            high = np.where(rate > 0, np.minimum(high, crossing), high)
            low = np.where(rate < 0, np.maximum(low, crossing), low)
            outside = (rate == 0) & (at_start > 0)
            high = np.where(outside, -1.0, high)
        return np.maximum(high - low, 0.0)

    @property
    def hash(self) -> str:
        """Return a short hash of sensor ids, positions (mm) and directions."""
        if "hash" not in self._cache:
            digest = hashlib.sha256()
            digest.update(self.sensor_id.astype(np.int64).tobytes())
            digest.update(np.round(self.position * 1000).astype(np.int64).tobytes())
            digest.update(np.round(self.direction * 1000).astype(np.int64).tobytes())
            self._cache["hash"] = digest.hexdigest()[:16]
        return self._cache["hash"]

    @property
    def _sensor_order(self) -> np.ndarray:
        """Return the rows in ascending sensor id (cached: look-ups sit on the service's per-call path)."""
        if "sensor_order" not in self._cache:
            self._cache["sensor_order"] = np.argsort(self.sensor_id, kind="stable")
        return self._cache["sensor_order"]

    @property
    def sorted_sensor_id(self) -> np.ndarray:
        """Return the sensor ids in ascending order (cached; for membership look-ups)."""
        if "sorted_sensor_id" not in self._cache:
            self._cache["sorted_sensor_id"] = self.sensor_id[self._sensor_order]
        return self._cache["sorted_sensor_id"]

    def sensor_rows(self, sensor_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (row index of each id, whether it is in the geometry); rows of unknown ids are arbitrary."""
        sorted_ids = self.sorted_sensor_id
        at = np.clip(np.searchsorted(sorted_ids, sensor_ids), 0, len(sorted_ids) - 1)
        return self._sensor_order[at], sorted_ids[at] == sensor_ids

    def sensor_lookup(self, sensor_ids: np.ndarray) -> np.ndarray:
        """Return row indices of ``sensor_ids``; raise GeometryError naming an unknown id."""
        rows, found = self.sensor_rows(sensor_ids)
        if not np.all(found):
            missing = np.asarray(sensor_ids)[~found][0]
            raise GeometryError(f"{self.name}: sensor_id {missing} is not in the geometry")
        return rows

    def to_table(self) -> pd.DataFrame:
        """Return the geometry as a table (the format load_geometry reads)."""
        return pd.DataFrame(
            {
                "sensor_id": self.sensor_id,
                "x": self.position[:, 0],
                "y": self.position[:, 1],
                "z": self.position[:, 2],
                "dir_x": self.direction[:, 0],
                "dir_y": self.direction[:, 1],
                "dir_z": self.direction[:, 2],
                "module_id": self.module_id,
                "string_id": self.string_id,
                "floor": self.floor,
            }
        )

    def describe(self) -> dict:
        """Return a JSON-able summary (name, family, counts, hash) for metadata."""
        return {
            "name": self.name,
            "family": self.family,
            "medium": self.medium,
            "n_sensors": int(self.n_sensors),
            "n_modules": int(self.n_modules),
            "n_strings": int(len(np.unique(self.string_id))),
            "hash": self.hash,
        }


# --- built-in layouts -------------------------------------------------------------------

def triangular_grid(n_points: int, spacing_m: float) -> np.ndarray:
    """Return the ``n_points`` points of a triangular lattice closest to the origin, (n, 2) [m].

    Ties in distance are broken by polar angle so the layout is deterministic.
    """
    extent = int(np.ceil(np.sqrt(n_points))) + 2
    i, j = np.meshgrid(np.arange(-extent, extent + 1), np.arange(-extent, extent + 1))
    x = spacing_m * (i + 0.5 * j)
    y = spacing_m * (np.sqrt(3) / 2 * j)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    radius = np.round(np.hypot(points[:, 0], points[:, 1]), 6)
    angle = np.round(np.mod(np.arctan2(points[:, 1], points[:, 0]), 2 * np.pi), 6)
    order = np.lexsort((angle, radius))
    return points[order[:n_points]]


def _single_pmt_geometry(
    name: str, string_xy: np.ndarray, dom_z: list[np.ndarray]
) -> Geometry:
    counts = [len(z) for z in dom_z]
    string_id = np.repeat(np.arange(1, len(string_xy) + 1), counts)
    floor = np.concatenate([np.arange(n)[::-1] for n in counts])  # floor 0 = lowest DOM
    xy = np.repeat(string_xy, counts, axis=0)
    position = np.column_stack([xy, np.concatenate(dom_z)])
    n = len(position)
    direction = np.tile([0.0, 0.0, -1.0], (n, 1))  # IceCube PMTs face down
    sensor_id = np.arange(n, dtype=np.int32)
    return Geometry(name, "icecube", sensor_id, position, direction, sensor_id.copy(),
                    string_id.astype(np.int32), floor.astype(np.int32))


def _icecube_standard_z() -> np.ndarray:
    # 60 DOMs at 17 m spacing between 1450 m and 2450 m depth (JINST 12 (2017) P03012).
    depth = 1450.0 + 17.0 * np.arange(60)
    return ICECUBE_ORIGIN_DEPTH_M - depth


DEEPCORE_HQE_EFFICIENCY = 1.35
"""DeepCore's high-quantum-efficiency PMTs detect ~35% more light (Astropart. Phys. 35 (2012) 615)."""
_DEEPCORE_FIDUCIAL_DEPTH_M = 2100.0


def _deepcore_z() -> np.ndarray:
    # DeepCore: 10 DOMs above the dust layer (veto, 10 m spacing) and 50 DOMs at 7 m spacing
    # in the clearest ice, 2100-2450 m depth (Astropart. Phys. 35 (2012) 615).
    depth = np.concatenate([1750.0 + 10.0 * np.arange(10), 2107.0 + 7.0 * np.arange(50)])
    return ICECUBE_ORIGIN_DEPTH_M - depth


def build_icecube86() -> Geometry:
    """Return IceCube-86: 78 strings on a 125 m triangular grid plus 8 DeepCore strings."""
    standard = triangular_grid(78, 125.0)
    # DeepCore strings sit between the central standard strings, ~72 m and ~42 m apart
    # (approximate layout of strings 79-86).
    ring = 72.0 * np.column_stack([np.cos(np.radians(30 + 60 * np.arange(6))),
                                   np.sin(np.radians(30 + 60 * np.arange(6)))])
    inner = 36.0 * np.array([[1.0, 0.0], [-1.0, 0.0]])
    deepcore = np.vstack([ring, inner])
    z = [_icecube_standard_z()] * 78 + [_deepcore_z()] * 8
    geometry = _single_pmt_geometry("icecube86", np.vstack([standard, deepcore]), z)
    on_deepcore_string = geometry.string_id > 78
    central = geometry.string_id <= 7  # the grid is ordered by radius: the centre string and its 6 neighbours
    deep = ICECUBE_ORIGIN_DEPTH_M - geometry.position[:, 2] > _DEEPCORE_FIDUCIAL_DEPTH_M
    # DeepCore's high-quantum-efficiency PMTs; its SMT3 trigger counts the DOMs below the dust
    # layer on the DeepCore strings and on the seven central IceCube strings
    # (IceCube, Astropart. Phys. 35 (2012) 615).
    return replace(geometry, relative_efficiency=np.where(on_deepcore_string, DEEPCORE_HQE_EFFICIENCY, 1.0),
                   trigger_subarray=deep & (on_deepcore_string | central), _cache={})


def build_icecube_mini() -> Geometry:
    """Return a 7-string IceCube subset (central hexagon, 60 DOMs each) for tests and quick runs."""
    return _single_pmt_geometry("icecube-mini", triangular_grid(7, 125.0), [_icecube_standard_z()] * 7)


# KM3NeT DOM: 31 3-inch PMTs, 19 in the lower and 12 in the upper hemisphere, in rings
# (Aiello et al., KM3NeT multi-PMT optical module, JINST 17 (2022) P07038).
# Polar angles measured from +z (up): one PMT looking straight down, then rings of six.
KM3NET_PMT_RING_THETA_DEG = (180.0, 147.4, 124.4, 109.6, 70.4, 55.6)
KM3NET_DOM_PMT_RADIUS_M = 0.2  # PMT photocathodes sit ~0.2 m from the DOM centre (17" sphere)


def km3net_pmt_directions() -> np.ndarray:
    """Return the 31 PMT pointing unit vectors of a KM3NeT DOM, (31, 3)."""
    dirs = [[0.0, 0.0, -1.0]]
    for ring, theta_deg in enumerate(KM3NET_PMT_RING_THETA_DEG[1:]):
        theta = np.radians(theta_deg)
        phi = np.radians(60.0 * np.arange(6) + (30.0 if ring % 2 else 0.0))
        dirs.extend(np.column_stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                     np.full(6, np.cos(theta))]))
    return np.asarray(dirs)


def build_km3net(name: str, n_units: int, unit_spacing_m: float, dom_spacing_m: float,
                 first_dom_height_m: float, n_doms: int = 18) -> Geometry:
    """Return a KM3NeT-like detector: ``n_units`` detection units of ``n_doms`` 31-PMT DOMs."""
    unit_xy = triangular_grid(n_units, unit_spacing_m)
    dom_height = first_dom_height_m + dom_spacing_m * np.arange(n_doms)
    dom_z = dom_height - dom_height.mean()  # centre the array vertically
    pmt_dirs = km3net_pmt_directions()
    n_pmt = len(pmt_dirs)
    unit = np.repeat(np.arange(n_units), n_doms * n_pmt)
    floor = np.tile(np.repeat(np.arange(n_doms), n_pmt), n_units)
    channel = np.tile(np.arange(n_pmt), n_units * n_doms)
    dom_centre = np.column_stack([unit_xy[unit], dom_z[floor]])
    direction = pmt_dirs[channel]
    position = dom_centre + KM3NET_DOM_PMT_RADIUS_M * direction
    module_id = unit * n_doms + floor
    sensor_id = module_id * n_pmt + channel
    return Geometry(name, "km3net", sensor_id.astype(np.int32), position, direction,
                    module_id.astype(np.int32), (unit + 1).astype(np.int32), floor.astype(np.int32))


# ORCA: ~20 m between units, ~9 m between DOMs; ARCA: ~90 m and ~36 m
# (KM3NeT Letter of Intent, J. Phys. G 43 (2016) 084001).
_BUILDERS: dict[str, Callable[[], Geometry]] = {
    "icecube86": build_icecube86,
    "icecube-mini": build_icecube_mini,
    "km3net-orca": lambda: build_km3net("km3net-orca", 115, 20.0, 9.0, 40.0),
    "km3net-arca": lambda: build_km3net("km3net-arca", 115, 90.0, 36.0, 80.0),
    "orca6": lambda: build_km3net("orca6", 6, 20.0, 9.0, 40.0),
}

DEFAULT_DETECTOR = "icecube86"


def available_detectors() -> list[str]:
    """Return the names of the built-in detectors."""
    return list(_BUILDERS)


@cache
def _builtin(name: str) -> Geometry:
    return _BUILDERS[name]()


GEOMETRY_FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".detx")
"""Suffixes of the geometry files get_geometry loads (any existing path is tried too)."""


def get_geometry(name_or_path: str | os.PathLike, family: str | None = None) -> Geometry:
    """Return a built-in detector by name, or load a geometry table from a path."""
    text = str(name_or_path)
    if text in _BUILDERS:
        return _builtin(text)
    path = Path(text)
    if path.suffix.lower() in GEOMETRY_FILE_SUFFIXES or path.exists():
        return load_geometry(path, family=family)
    known = ", ".join(_BUILDERS)
    raise GeometryError(f"unknown detector '{text}' (built-in: {known}; or a .csv/.parquet geometry table or a .detx file)")


# Column names used by other tools for the same quantities.
_COLUMN_ALIASES = {
    "x": ("x", "dom_x", "sensor_x", "pos_x"),
    "y": ("y", "dom_y", "sensor_y", "pos_y"),
    "z": ("z", "dom_z", "sensor_z", "pos_z"),
    "dir_x": ("dir_x", "pmt_dir_x", "sensor_dir_x"),
    "dir_y": ("dir_y", "pmt_dir_y", "sensor_dir_y"),
    "dir_z": ("dir_z", "pmt_dir_z", "sensor_dir_z"),
    "string_id": ("string_id", "string", "sensor_string_id", "du"),
    "floor": ("floor", "dom_number", "sensor_floor"),
    "module_id": ("module_id", "dom_id"),
}


def load_geometry(path: str | os.PathLike, family: str | None = None, name: str | None = None,
                  in_ice_only: bool = True) -> Geometry:
    """Load a geometry table (CSV or Parquet) with sensor_id (optional), x, y, z and optional dirs.

    A KM3NeT ``.detx`` detector file is read by ``load_detx`` instead.

    GraphNeT (``dom_x``...), Prometheus (``sensor_x``...) and Kaggle (``x``...) column
    names are understood. For GraphNeT's IceCube table, IceTop DOMs (dom_type 30) are
    dropped unless ``in_ice_only`` is False. ``family`` defaults to "km3net" when the table
    has several sensors per position group id, else "icecube".
    """
    path = Path(path)
    if not path.exists():
        raise GeometryError(f"{path}: no such geometry file")
    if path.suffix.lower() == ".detx":  # KM3NeT detector file
        return load_detx(path, name=name)
    try:
        table = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        stored = {} if path.suffix.lower() == ".csv" else _stored_identity(path)
    except Exception as err:
        raise GeometryError(f"{path}: cannot read geometry table ({err})") from err
    if not isinstance(table.index, pd.RangeIndex):
        table = table.reset_index()
    if in_ice_only and "dom_type" in table.columns:
        table = table[table["dom_type"] != 30]
    columns = {}
    for canonical, aliases in _COLUMN_ALIASES.items():
        found = next((a for a in aliases if a in table.columns), None)
        if found is not None:
            columns[canonical] = table[found].to_numpy()
    for required in ("x", "y", "z"):
        if required not in columns:
            raise GeometryError(f"{path}: geometry table has no '{required}' column")
    n = len(table)
    if n == 0:
        raise GeometryError(f"{path}: geometry table has no sensors")
    position = np.column_stack([columns["x"], columns["y"], columns["z"]]).astype(np.float64)
    if not np.all(np.isfinite(position)):
        raise GeometryError(f"{path}: non-finite sensor position")
    sensor_id = (table["sensor_id"].to_numpy() if "sensor_id" in table.columns else np.arange(n)).astype(np.int64)
    if "dir_x" in columns:
        direction = np.column_stack([columns["dir_x"], columns["dir_y"], columns["dir_z"]]).astype(float)
        direction = np.nan_to_num(direction)
    else:
        direction = np.tile([0.0, 0.0, -1.0], (n, 1))
    string_id = columns.get("string_id", np.zeros(n)).astype(np.int32)
    floor = columns.get("floor", np.zeros(n)).astype(np.int32)
    if "module_id" in columns:
        module_id = columns["module_id"].astype(np.int64)
    else:
        # Sensors at the same point (within 0.5 m) belong to one module.
        _, module_id = np.unique(np.round(position / 0.5), axis=0, return_inverse=True)
    if family is None:
        family = stored.get("family") or ("km3net" if len(np.unique(module_id)) < n else "icecube")
    try:
        return Geometry(name or stored.get("name") or path.stem, family, sensor_id, position, direction,
                        np.asarray(module_id).ravel(), string_id, floor)
    except GeometryError as err:
        raise GeometryError(f"{path}: {err}") from err


GEOMETRY_METADATA_KEY = b"nurec_geometry"
"""Parquet key-value metadata of a table written by write_geometry_table: its name and family."""


def write_geometry_table(geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write ``geometry`` as a Parquet table that load_geometry reads back, atomically; return the path.

    The name and family travel in the file's metadata: a table of PMTs seen in hits may
    hold one PMT per module, from which load_geometry would guess the wrong family (and medium).
    """
    table = pa.Table.from_pandas(geometry.to_table(), preserve_index=False)
    identity = json.dumps({"name": geometry.name, "family": geometry.family}).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), GEOMETRY_METADATA_KEY: identity})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue().to_pybytes())


def _stored_identity(path: Path) -> dict:
    """Return the name and family a Parquet geometry table stores (empty for other tables)."""
    stored = (pq.read_schema(path).metadata or {}).get(GEOMETRY_METADATA_KEY)
    return json.loads(stored) if stored else {}


def geometry_from_detx(detector: DetxDetector, name: str | None = None) -> Geometry:
    """Return a parsed detx detector as a Geometry (family "km3net", sensor_id = PMT id, floor 0 = lowest)."""
    try:
        return Geometry(
            name or detector.path.stem, "km3net", detector.sensor_id.astype(np.int64), detector.position,
            detector.direction, detector.dom_id.copy(), detector.du.copy(),
            np.maximum(detector.floor - 1, 0).astype(np.int32),
        )
    except GeometryError as err:
        raise GeometryError(f"{detector.path}: {err}") from err


def load_detx(path: str | os.PathLike, name: str | None = None) -> Geometry:
    """Return the geometry (family "km3net") described by a KM3NeT detx file."""
    try:
        detector = parse_detx(path)
    except DetxError as err:
        raise GeometryError(str(err)) from err
    return geometry_from_detx(detector, name)


# --- geometry seen in hits ----------------------------------------------------------------

SENSOR_POSITION_TOLERANCE_M = 1e-3
"""Hits on one sensor whose positions differ by more than this disagree about the detector."""
SENSOR_DIRECTION_TOLERANCE = 1e-3
"""Largest difference of PMT direction components (unit vectors, ~0.06 degree) between hits on one sensor."""
STRING_LINK_M = 5.0
"""Modules closer than this horizontally (transitively) hang on one string: KM3NeT strings stand
>= 20 m apart (ORCA), and neighbouring modules of one string, even under sea currents, far closer."""


def linked_groups(points: np.ndarray, link_m: float) -> np.ndarray:
    """Return a group index per point: points closer than ``link_m`` (transitively) share one.

    Points are compared rounded to 1 mm, so the groups do not depend on float noise.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(np.round(points, 3), axis=0, return_inverse=True)
    pairs = cKDTree(unique).query_pairs(link_m, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(unique), len(unique)))
    _, label = connected_components(graph, directed=False)
    return label[inverse.ravel()].astype(np.int64)


def strings_of_modules(module_position: np.ndarray, link_m: float = STRING_LINK_M) -> np.ndarray:
    """Return a string id (1..n, numbered by x then y of the string) per module from module centres [m].

    For files that do not say which string a module hangs on: modules on one near-vertical
    line share a string.
    """
    group = linked_groups(module_position[:, :2], link_m)
    if len(group) == 0:
        return np.zeros(0, dtype=np.int32)
    n_groups = group.max() + 1
    centre = np.zeros((n_groups, 2))
    np.add.at(centre, group, module_position[:, :2])
    centre /= np.bincount(group, minlength=n_groups)[:, None]
    rank = np.empty(n_groups, dtype=np.int32)
    rank[np.lexsort((centre[:, 1], centre[:, 0]))] = np.arange(n_groups)
    return rank[group] + 1


def floors_by_height(string_id: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Return each module's floor: its rank by height among the modules of its string (0 = lowest)."""
    order = np.lexsort((height_m, string_id))
    floor = np.empty(len(order), dtype=np.int32)
    start = np.r_[0, np.flatnonzero(np.diff(string_id[order])) + 1]
    first_of_string = np.repeat(start, np.diff(np.r_[start, len(order)]))
    floor[order] = np.arange(len(order)) - first_of_string
    return floor


class SensorCollector:
    """Collect sensors (id, module, position, direction) from hits, batch by batch, into a geometry.

    For files whose hits carry calibrated positions but no detector description: memory
    grows with the number of distinct sensors, not of hits. Every hit on a sensor must agree
    with the first one seen (same module, positions within SENSOR_POSITION_TOLERANCE_M,
    directions within SENSOR_DIRECTION_TOLERANCE), else ``add`` raises GeometryError naming
    the sensor. Only sensors that recorded at least one hit are known.
    """

    def __init__(self) -> None:
        self.sensor_id = np.zeros(0, dtype=np.int64)
        self.module_id = np.zeros(0, dtype=np.int64)
        self.position = np.zeros((0, 3))
        self.direction = np.zeros((0, 3))

    @property
    def n_sensors(self) -> int:
        return len(self.sensor_id)

    def add(self, sensor_id: np.ndarray, module_id: np.ndarray, position: np.ndarray, direction: np.ndarray) -> None:
        """Add the sensors of a batch of hits (one row per hit); raise GeometryError if hits disagree."""
        sensor_id = np.concatenate([self.sensor_id, np.asarray(sensor_id, dtype=np.int64)])
        module_id = np.concatenate([self.module_id, np.asarray(module_id, dtype=np.int64)])
        position = np.concatenate([self.position, np.asarray(position, dtype=float)])
        direction = np.concatenate([self.direction, np.asarray(direction, dtype=float)])
        # np.unique's first index: the known row where there is one, as known rows come first.
        _, first, inverse = np.unique(sensor_id, return_index=True, return_inverse=True)
        reference = first[inverse.ravel()]
        _check_same_sensor(sensor_id, module_id, position, direction, reference)
        self.sensor_id, self.module_id = sensor_id[first], module_id[first]
        self.position, self.direction = position[first], direction[first]

    def geometry(self, name: str, family: str) -> Geometry:
        """Return the collected sensors as a Geometry; strings and floors are derived from positions."""
        if self.n_sensors == 0:
            raise GeometryError(f"{name}: no sensors seen")
        modules, module_index = np.unique(self.module_id, return_inverse=True)
        centre = np.zeros((len(modules), 3))
        np.add.at(centre, module_index, self.position)
        centre /= np.bincount(module_index, minlength=len(modules))[:, None]
        string_of_module = strings_of_modules(centre)
        floor_of_module = floors_by_height(string_of_module, centre[:, 2])
        return Geometry(name, family, self.sensor_id.copy(), self.position.copy(), self.direction.copy(),
                        self.module_id.copy(), string_of_module[module_index], floor_of_module[module_index])


def _check_same_sensor(sensor_id: np.ndarray, module_id: np.ndarray, position: np.ndarray,
                       direction: np.ndarray, reference: np.ndarray) -> None:
    """Raise GeometryError naming the first sensor whose hit disagrees with the ``reference`` row."""
    moved = np.linalg.norm(position - position[reference], axis=1) > SENSOR_POSITION_TOLERANCE_M
    turned = np.abs(direction - direction[reference]).max(axis=1, initial=0.0) > SENSOR_DIRECTION_TOLERANCE
    rehung = module_id != module_id[reference]
    bad = np.flatnonzero(moved | turned | rehung)
    if len(bad) == 0:
        return
    i, j = bad[0], reference[bad[0]]
    if rehung[i]:
        raise GeometryError(f"sensor_id {sensor_id[i]} is on module {module_id[j]} in one hit and {module_id[i]} in another")
    what, unit, a, b = ("position", " m", position[j], position[i]) if moved[i] else \
        ("direction", "", direction[j], direction[i])
    raise GeometryError(f"sensor_id {sensor_id[i]} has {what} {_triple(a)}{unit} in one hit and "
                        f"{_triple(b)}{unit} in another")


def _triple(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"
