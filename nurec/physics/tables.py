"""Photon tables: expected photo-electrons and arrival-delay distributions from the photon Monte Carlo.

For each medium (water: KM3NeT 3-inch PMT; ice: IceCube DOM) two tables are built with
``nurec.physics.photon_mc`` (the field's standard, as IceCube's photonics/CLSim spline tables
and Jpp's PDF tables):

- ``cascade``: a point EM cascade at the origin along +z, per GeV of EM energy, binned in the
  distance r to the sensor (shells at log-spaced radii: the grid nodes) and cos η, η the angle
  between the cascade axis and the direction from the vertex to the sensor (bins);
- ``track``: an infinite bare muon (β = 1) along +z, its Cherenkov light per metre, binned in
  the perpendicular distance ρ (cylinders at log-spaced radii).

In every cell the fluence of photons arriving within ``delay_max_ns`` of the direct time is
tabulated against the photon's arrival direction u in the cell's local frame (d0, d1, d2):
θ = angle(u, d0), φ the azimuth around d0 from the d1 side, folded onto [0, π] by the mirror
symmetry of the source. Cascade: d0 = the radial direction from the vertex, d1 in the plane
of the axis and d0, pointing to the axis side; track: d0 = the direct Cherenkov direction
(cos θc = 1/n at the spectrum's median wavelength), d1 in the plane of the track and the
sensor, d2 = track × radial. Values are expected photo-electrons for a sensor of unit relative
acceptance in all directions (the sensor's wavelength efficiency is folded in by the Monte Carlo);
the angular acceptance of a sensor facing p is folded in at lookup, Σ npe(θ, φ) · A(u·p).
The delay (arrival time minus the earliest direct time, see ``direct_time_ns``) is tabulated
as a normalised histogram for five classes of arrival angle θ, mixed at lookup by their
acceptance-weighted charge, so a PMT facing away sees its late, scattered light.

Estimator: each crossing of a shell adds weight/|cos(u, shell normal)| to the fluence;
|cos| < 0.1 counts as 2/0.1, the cosine cut-off of the surface-flux tally of MCNP (X-5 Monte
Carlo Team, MCNP5 manual, LA-UR-03-1987, the F2 tally), unbiased for light that is isotropic
near grazing. The relative statistical error of each cell's total is estimated from the
scatter between batches (``npe_rel_error``). Photons are tracked until no later crossing
can fall inside the delay range, or for at most 20 absorption lengths (weight e^-20).

Lookup: linear in cos η between bin centres; cubic (4-point Lagrange) in log npe vs log
distance between the shells, linear next to the table's ends; the delay distribution mixes
the two cos η neighbours and interpolates the quantile functions of the two distance
neighbours, so a distribution that stretches with distance is carried along. Distances outside the
table raise a one-line ValueError naming the quantity; a missing table or a table whose
SHA-256 does not match ``tables.json`` raises a one-line TableError naming the command that
rebuilds it. Files: ``nurec/physics/tables/{medium}.npz`` (float32 arrays, written with fixed
zip timestamps so that a seed fixes the bytes, loaded with allow_pickle=False) and
``tables.json`` (build command, settings, seed, SHA-256 and size of each file, build time).

Limits: the cascade is point-like (no longitudinal extent); the ice is homogeneous (no layers,
tilt or anisotropy, no hole ice); the tables count light within ``delay_max_ns`` (2 µs water,
5 µs ice) of the direct time; far cells see few photons (ice beyond ~300 m: relative errors
of 5-30 %, see ``npe_rel_error``).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nurec.io.files import write_atomic, write_json_atomic
from nurec.physics.medium import SPEED_OF_LIGHT_M_PER_NS
from nurec.physics.optics import absorption_length_m, check_medium, n_group, n_phase
from nurec.physics.photon_mc import (
    SOURCES,
    Crossings,
    Segments,
    cylinder_crossings,
    detected_spectrum,
    direct_time_factors,
    emit,
    propagate,
    sphere_crossings,
)
from nurec.physics.sensors import sensor_for
from nurec.version import __version__

TABLE_DIR = Path(__file__).resolve().parent / "tables"
MANIFEST = "tables.json"
FORMAT_VERSION = 1
GRAZING_COS = 0.1
_CASCADE_COS_EDGES = (-1.0, -0.9, -0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4,
                      0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8, 0.85, 0.9, 0.95, 1.0)
_THETA_EDGES_DEG = (0.0, 4.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0, 125.0, 150.0, 180.0)
_DELAY_CLASS_EDGES_DEG = (0.0, 4.0, 13.0, 30.0, 80.0, 180.0)


class TableError(OSError):
    """A photon table is missing, unreadable or not the file its manifest names."""


@dataclass(frozen=True)
class TableSettings:
    """How one table is built: medium, source, photons, seed and the binning."""

    medium: str
    source: str
    photons: int
    seed: int
    distance_min_m: float
    distance_max_m: float
    n_distance: int
    delay_max_ns: float
    n_delay: int = 56
    delay_first_edge_ns: float = 0.5
    cos_eta_edges: tuple[float, ...] = _CASCADE_COS_EDGES
    theta_edges_deg: tuple[float, ...] = _THETA_EDGES_DEG
    n_phi: int = 6
    delay_class_edges_deg: tuple[float, ...] = _DELAY_CLASS_EDGES_DEG
    batch_size: int = 100_000
    absorption_lengths: float = 20.0  # photons stop after this many absorption lengths

    def __post_init__(self) -> None:
        check_medium(self.medium)
        if self.source not in SOURCES:
            raise ValueError(f"unknown source '{self.source}' (known: {', '.join(SOURCES)})")
        if self.photons < self.batch_size or self.photons % self.batch_size:
            raise ValueError(f"photons must be a positive multiple of batch_size {self.batch_size}, "
                             f"got {self.photons}")
        if not set(self.delay_class_edges_deg) <= set(self.theta_edges_deg):
            raise ValueError("delay_class_edges_deg must be a subset of theta_edges_deg")

    @property
    def distance_nodes_m(self) -> np.ndarray:
        """Return the shell radii [m], log-spaced from distance_min_m to distance_max_m."""
        return np.geomspace(self.distance_min_m, self.distance_max_m, self.n_distance)

    @property
    def cos_edges(self) -> np.ndarray:
        """Return the cos η bin edges (one bin [-1, 1] for a track)."""
        return np.array(self.cos_eta_edges if self.source == "cascade" else (-1.0, 1.0))

    @property
    def delay_edges_ns(self) -> np.ndarray:
        """Return the delay bin edges [ns]: 0, then log-spaced up to delay_max_ns."""
        return np.concatenate([[0.0], np.geomspace(self.delay_first_edge_ns, self.delay_max_ns, self.n_delay)])


DEFAULTS: dict[str, dict[str, Any]] = {
    "water": {"distance_min_m": 1.0, "distance_max_m": 300.0, "n_distance": 36, "delay_max_ns": 2000.0},
    "ice": {"distance_min_m": 1.0, "distance_max_m": 500.0, "n_distance": 40, "delay_max_ns": 5000.0},
}
DEFAULT_PHOTONS = {"water": 4_000_000, "ice": 2_000_000}
DEFAULT_SEED = 20261127


def default_settings(medium: str, source: str, photons: int | None = None, seed: int | None = None,
                     **overrides: Any) -> TableSettings:
    """Return the shipped tables' settings for ``medium`` and ``source`` (photons and seed overridable)."""
    check_medium(medium)
    options = {**DEFAULTS[medium], **overrides}
    return TableSettings(medium=medium, source=source,
                         photons=DEFAULT_PHOTONS[medium] if photons is None else photons,
                         seed=DEFAULT_SEED if seed is None else seed, **options)


@dataclass(frozen=True)
class PhotonTable:
    """One medium's table for one source; see the module docstring for the axes and units.

    ``npe``: (distance, cos η, θ, φ) expected pe per GeV (cascade) or of an infinite track
    (track) for unit relative acceptance; ``mean_cos_theta``: (distance, cos η, θ) the
    photon-weighted mean cos θ within each θ bin; ``delay_pdf``: (distance, cos η, class,
    delay bin) normalised histograms; ``npe_rel_error``: (distance, cos η) relative statistical
    error of the cell's total.
    """

    medium: str
    source: str
    sensor: str
    distance_m: np.ndarray
    cos_eta_edges: np.ndarray
    theta_edges_deg: np.ndarray
    n_phi: int
    delay_edges_ns: np.ndarray
    theta_class: np.ndarray
    npe: np.ndarray
    mean_cos_theta: np.ndarray
    delay_pdf: np.ndarray
    npe_rel_error: np.ndarray
    reference_cos_theta: float
    time_factor: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cos_eta_nodes(self) -> np.ndarray:
        """Return the cos η bin centres (the interpolation nodes)."""
        return 0.5 * (self.cos_eta_edges[1:] + self.cos_eta_edges[:-1])

    @property
    def phi_centres_rad(self) -> np.ndarray:
        """Return the φ bin centres [rad] on [0, π]."""
        return (np.arange(self.n_phi) + 0.5) * np.pi / self.n_phi

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the table's arrays by name (what the .npz file holds)."""
        return {
            "distance_m": self.distance_m, "cos_eta_edges": self.cos_eta_edges,
            "theta_edges_deg": self.theta_edges_deg, "delay_edges_ns": self.delay_edges_ns,
            "theta_class": self.theta_class, "npe": self.npe, "mean_cos_theta": self.mean_cos_theta,
            "delay_pdf": self.delay_pdf, "npe_rel_error": self.npe_rel_error,
        }


# ---------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class _Binning:
    settings: TableSettings
    radii: np.ndarray
    cos_edges: np.ndarray
    theta_edges: np.ndarray
    delay_edges: np.ndarray
    theta_class: np.ndarray
    reference_cos: float
    time_factor: float

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.radii), len(self.cos_edges) - 1, len(self.theta_edges) - 1, self.settings.n_phi)

    @property
    def n_class(self) -> int:
        return int(self.theta_class.max()) + 1


def _binning(settings: TableSettings) -> _Binning:
    cascade_factor, track_factor = direct_time_factors(settings.medium)
    spectrum = detected_spectrum(settings.medium)
    median_nm = float(np.interp(0.5, spectrum.cdf, spectrum.wavelength_nm))
    reference_cos = 1.0 if settings.source == "cascade" else float(1.0 / n_phase(settings.medium, median_nm))
    theta_edges = np.array(settings.theta_edges_deg)
    centres = 0.5 * (theta_edges[1:] + theta_edges[:-1])
    theta_class = np.searchsorted(np.array(settings.delay_class_edges_deg), centres, side="right") - 1
    return _Binning(settings, settings.distance_nodes_m, settings.cos_edges, theta_edges, settings.delay_edges_ns,
                    theta_class.astype(np.int16), reference_cos,
                    cascade_factor if settings.source == "cascade" else track_factor)


def _local_direction(binning: _Binning, crossings: Crossings, u: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return (cos η bin, cos θ, φ [rad], cos to the shell normal) of crossing photons."""
    position = crossings.position_m
    radius = binning.radii[crossings.shell]
    if binning.settings.source == "cascade":
        cos_eta = np.clip(position[:, 2] / radius, -1.0, 1.0)
        normal = np.einsum("ij,ij->i", position, u) / radius
        sin_eta = np.sqrt(np.maximum(1.0 - cos_eta**2, 0.0))
        on_axis = sin_eta < 1e-9
        side = np.where(on_axis, np.sqrt(np.maximum(1.0 - normal**2, 0.0)),
                        (u[:, 2] - cos_eta * normal) / np.where(on_axis, 1.0, sin_eta))
        polar = normal
        cos_bin = np.clip(np.searchsorted(binning.cos_edges, cos_eta, side="right") - 1, 0, len(binning.cos_edges) - 2)
    else:
        normal = (position[:, 0] * u[:, 0] + position[:, 1] * u[:, 1]) / radius
        cos0 = binning.reference_cos
        sin0 = np.sqrt(1.0 - cos0**2)
        polar = cos0 * u[:, 2] + sin0 * normal
        side = -sin0 * u[:, 2] + cos0 * normal
        cos_bin = np.zeros(len(radius), dtype=np.intp)
    polar = np.clip(polar, -1.0, 1.0)
    across = np.sqrt(np.maximum(1.0 - polar**2 - side**2, 0.0))
    return cos_bin, polar, np.arctan2(across, side), normal


def _delay_ns(binning: _Binning, crossings: Crossings, arrival_ns: np.ndarray) -> np.ndarray:
    radius = binning.radii[crossings.shell]
    direct = radius * binning.time_factor / SPEED_OF_LIGHT_M_PER_NS
    if binning.settings.source == "track":
        direct = direct + crossings.position_m[:, 2] / SPEED_OF_LIGHT_M_PER_NS
    return np.maximum(arrival_ns - direct, 0.0)


@dataclass
class _Tally:
    """Running sums of one table's build (per batch and in total)."""

    binning: _Binning
    fluence: np.ndarray = field(init=False)
    cos_sum: np.ndarray = field(init=False)
    delay: np.ndarray = field(init=False)
    batch_cells: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        n_r, n_c, n_t, n_p = self.binning.shape
        self.fluence = np.zeros(n_r * n_c * n_t * n_p)
        self.cos_sum = np.zeros(n_r * n_c * n_t)
        self.delay = np.zeros(n_r * n_c * self.binning.n_class * (len(self.binning.delay_edges) - 1))

    def add(self, segments: Segments, crossings: Crossings) -> None:
        b = self.binning
        n_r, n_c, n_t, n_p = b.shape
        seg = crossings.segment
        u = segments.direction[seg]
        delay = _delay_ns(b, crossings, segments.time_at(seg, crossings.distance_m))
        keep = delay < b.delay_edges[-1]
        if not keep.all():
            crossings = Crossings(seg[keep], crossings.distance_m[keep], crossings.shell[keep],
                                  crossings.position_m[keep])
            seg, u, delay = seg[keep], u[keep], delay[keep]
        cos_bin, polar, phi, normal = _local_direction(b, crossings, u)
        grazing = np.abs(normal) < GRAZING_COS
        inverse_cos = np.where(grazing, 2.0 / GRAZING_COS, 1.0 / np.where(grazing, 1.0, np.abs(normal)))
        weight = segments.weight_at(seg, crossings.distance_m) * inverse_cos
        theta_bin = np.clip(np.searchsorted(b.theta_edges, np.degrees(np.arccos(polar)), side="right") - 1, 0, n_t - 1)
        phi_bin = np.minimum((phi * (n_p / np.pi)).astype(np.intp), n_p - 1)
        cell = crossings.shell * n_c + cos_bin
        self.fluence += np.bincount((cell * n_t + theta_bin) * n_p + phi_bin, weight, self.fluence.size)
        self.cos_sum += np.bincount(cell * n_t + theta_bin, weight * polar, self.cos_sum.size)
        n_delay = len(b.delay_edges) - 1
        delay_bin = np.clip(np.searchsorted(b.delay_edges, delay, side="right") - 1, 0, n_delay - 1)
        index = (cell * b.n_class + b.theta_class[theta_bin]) * n_delay + delay_bin
        self.delay += np.bincount(index, weight, self.delay.size)

    def end_batch(self) -> None:
        n_r, n_c, n_t, n_p = self.binning.shape
        total = self.fluence.reshape(n_r * n_c, n_t * n_p).sum(axis=1)
        previous = sum(self.batch_cells) if self.batch_cells else 0.0
        self.batch_cells.append(total - previous)


def _max_path_m(settings: TableSettings, binning: _Binning, wavelength_nm: np.ndarray) -> np.ndarray:
    """Return per-photon path limits: beyond them no crossing lies inside the delay range, or light is gone."""
    reach = settings.delay_max_ns * SPEED_OF_LIGHT_M_PER_NS
    if settings.source == "cascade":
        kinematic = settings.distance_max_m + reach / binning.time_factor
    else:  # a photon running along the track gains delay at (n_g - 1)/c per metre at least
        slowest = float(n_group(settings.medium, wavelength_nm).min()) - 1.0
        kinematic = (reach + settings.distance_max_m * binning.time_factor) / slowest
    return np.minimum(kinematic, settings.absorption_lengths * absorption_length_m(settings.medium, wavelength_nm))


def build_table(settings: TableSettings, progress: Callable[[str], None] | None = None) -> PhotonTable:
    """Return the table ``settings`` describe, tracking ``settings.photons`` photons (seeded)."""
    binning = _binning(settings)
    tally = _Tally(binning)
    rng = np.random.default_rng([settings.seed, SOURCES.index(settings.source)])
    record = sphere_crossings if settings.source == "cascade" else cylinder_crossings
    n_batches = settings.photons // settings.batch_size
    started = time.perf_counter()
    for batch in range(n_batches):
        photons = emit(settings.source, settings.medium, settings.batch_size, rng)
        photons.weight *= settings.batch_size / settings.photons
        for segments in propagate(photons, settings.medium, rng, _max_path_m(settings, binning, photons.wavelength_nm)):
            tally.add(segments, record(segments, binning.radii))
        tally.end_batch()
        if progress:
            progress(f"{settings.medium} {settings.source}: batch {batch + 1}/{n_batches} "
                     f"({time.perf_counter() - started:.0f} s)")
    return _finish(settings, binning, tally)


def _finish(settings: TableSettings, binning: _Binning, tally: _Tally) -> PhotonTable:
    n_r, n_c, n_t, n_p = binning.shape
    if settings.source == "cascade":
        area = 2.0 * np.pi * binning.radii[:, None] ** 2 * np.diff(binning.cos_edges)[None, :]
    else:  # cylinder of radius ρ per metre of track
        area = 2.0 * np.pi * binning.radii[:, None] * np.ones((1, 1))
    fluence = tally.fluence.reshape(n_r, n_c, n_t, n_p)
    npe = fluence / area[:, :, None, None]
    in_bin = fluence.sum(axis=3)
    centres = np.cos(np.radians(0.5 * (binning.theta_edges[1:] + binning.theta_edges[:-1])))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_cos = np.where(in_bin > 0, tally.cos_sum.reshape(n_r, n_c, n_t) / in_bin, centres)
    n_delay = len(binning.delay_edges) - 1
    delay = tally.delay.reshape(n_r, n_c, binning.n_class, n_delay)
    norm = delay.sum(axis=3, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        delay_pdf = np.where(norm > 0, delay / norm, 0.0)
    batches = np.array(tally.batch_cells)
    total = batches.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(total > 0, np.sqrt(len(batches) * batches.var(axis=0, ddof=1)) / total, 1.0)
    return PhotonTable(
        medium=settings.medium, source=settings.source, sensor=sensor_for(settings.medium).name,
        distance_m=binning.radii.astype(np.float32), cos_eta_edges=binning.cos_edges.astype(np.float32),
        theta_edges_deg=binning.theta_edges.astype(np.float32), n_phi=n_p,
        delay_edges_ns=binning.delay_edges.astype(np.float32), theta_class=binning.theta_class,
        npe=npe.astype(np.float32), mean_cos_theta=mean_cos.astype(np.float32),
        delay_pdf=delay_pdf.astype(np.float32), npe_rel_error=error.reshape(n_r, n_c).astype(np.float32),
        reference_cos_theta=binning.reference_cos, time_factor=binning.time_factor,
        settings=_settings_record(settings),
    )


def _settings_record(settings: TableSettings) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(settings).items()}


# ---------------------------------------------------------------------------------------------
# Files


def build_command(medium: str, directory: str | Path | None = None, seed: int | None = None,
                  photons: int | None = None) -> str:
    """Return the command line that builds ``medium``'s tables into ``directory``."""
    parts = ["nurec tables build", f"--medium {medium}"]
    if directory is not None and Path(directory).resolve() != TABLE_DIR:
        parts.append(f"--out {directory}")
    if seed is not None and seed != DEFAULT_SEED:
        parts.append(f"--seed {seed}")
    if photons is not None and photons != DEFAULT_PHOTONS.get(medium):
        parts.append(f"--photons {photons}")
    return " ".join(parts)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Return an .npz archive of ``arrays`` whose bytes depend on the arrays only (fixed zip timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def tables_to_bytes(tables: list[PhotonTable]) -> bytes:
    """Return the .npz bytes holding ``tables`` (one medium's cascade and track tables)."""
    arrays: dict[str, np.ndarray] = {}
    header = {"format_version": FORMAT_VERSION, "nurec_version": __version__, "tables": {}}
    for table in tables:
        for name, value in table.arrays().items():
            arrays[f"{table.source}__{name}"] = value
        header["tables"][table.source] = {
            "medium": table.medium, "sensor": table.sensor, "n_phi": table.n_phi,
            "reference_cos_theta": table.reference_cos_theta, "time_factor": table.time_factor,
            "settings": table.settings,
        }
    arrays["header_json"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    return _npz_bytes(arrays)


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_tables(medium: str, tables: list[PhotonTable], directory: str | Path = TABLE_DIR,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``{medium}.npz`` into ``directory`` and record it (file, SHA-256, settings) in tables.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = tables_to_bytes(tables)
    path = write_atomic(directory / f"{medium}.npz", data)
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    settings = {table.source: table.settings for table in tables}
    first = next(iter(settings.values()))
    manifest[medium] = {
        "file": path.name, "sha256": sha256_hex(data), "bytes": len(data),
        "build_command": build_command(medium, directory, first["seed"], first["photons"]),
        "seed": first["seed"], "photons_per_source": first["photons"], "sensor": tables[0].sensor,
        "format_version": FORMAT_VERSION, "settings": settings, **(extra or {}),
    }
    write_json_atomic(manifest_path, manifest)
    return path


def build_medium(medium: str, directory: str | Path = TABLE_DIR, seed: int | None = None,
                 photons: int | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Build and write both tables of ``medium``; return the .npz path (build time is recorded)."""
    started = time.perf_counter()
    tables = [build_table(default_settings(medium, source, photons, seed), progress) for source in SOURCES]
    return write_tables(medium, tables, directory, {"build_seconds": round(time.perf_counter() - started, 1)})


def _rebuild_hint(medium: str, directory: Path) -> str:
    return f"rebuild it with `{build_command(medium, directory)}`"


def read_manifest(directory: str | Path = TABLE_DIR) -> dict[str, Any]:
    """Return tables.json of ``directory`` (empty if there is none)."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TableError(f"{path}: not valid JSON ({err})") from err


def verified_bytes(medium: str, directory: str | Path = TABLE_DIR) -> bytes:
    """Return the bytes of ``medium``'s table file after checking them against tables.json."""
    check_medium(medium)
    directory = Path(directory)
    entry = read_manifest(directory).get(medium)
    path = directory / f"{medium}.npz"
    if entry is None or not path.exists():
        raise TableError(f"{path}: no {medium} photon table; {_rebuild_hint(medium, directory)}")
    data = path.read_bytes()
    if sha256_hex(data) != entry["sha256"]:
        raise TableError(f"{path}: SHA-256 does not match {MANIFEST}; {_rebuild_hint(medium, directory)}")
    return data


def load_table(medium: str, source: str, directory: str | Path = TABLE_DIR) -> PhotonTable:
    """Return ``medium``'s ``source`` table ("cascade" or "track") from ``directory``.

    The file's SHA-256 is checked against tables.json; the table is kept in memory until the
    file or the manifest changes (size or modification time).
    """
    check_medium(medium)
    if source not in SOURCES:
        raise ValueError(f"unknown source '{source}' (known: {', '.join(SOURCES)})")
    directory = Path(directory).resolve()
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
                   for p in (directory / f"{medium}.npz", directory / MANIFEST))
    return _load_cached(medium, source, str(directory), stamps)


@cache
def _load_cached(medium: str, source: str, directory: str, stamps: tuple) -> PhotonTable:
    return tables_from_bytes(verified_bytes(medium, directory))[source]


def tables_from_bytes(data: bytes) -> dict[str, PhotonTable]:
    """Return the tables in .npz bytes by source (no pickle)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop("header_json").tobytes().decode())
    tables = {}
    for source, info in header["tables"].items():
        own = {name.split("__", 1)[1]: value for name, value in arrays.items() if name.startswith(f"{source}__")}
        tables[source] = PhotonTable(
            medium=info["medium"], source=source, sensor=info["sensor"], n_phi=int(info["n_phi"]),
            reference_cos_theta=float(info["reference_cos_theta"]), time_factor=float(info["time_factor"]),
            settings=info["settings"], **own)
    return tables


# ---------------------------------------------------------------------------------------------
# Lookup


@dataclass(frozen=True)
class SensorGeometry:
    """Where a sensor sits relative to a source, in a table's terms (arrays broadcast together).

    ``distance_m``: r to the vertex (cascade) or ρ to the track (track); ``cos_eta``: cos of the
    angle between the cascade axis and the vertex→sensor direction (ignored for tracks);
    ``pmt_local``: the sensor axis in the cell's local frame (d0, d1, d2), shape (..., 3).
    """

    distance_m: np.ndarray
    cos_eta: np.ndarray
    pmt_local: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _any_perpendicular(v: np.ndarray) -> np.ndarray:
    helper = np.where(np.abs(v[..., 2:3]) < 0.9, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    return _unit(np.cross(v, helper))


def sensor_geometry(table: PhotonTable, sensor_pos, sensor_dir, source_pos, source_dir) -> SensorGeometry:
    """Return the geometry of sensors at ``sensor_pos`` facing ``sensor_dir`` seen from a source.

    The source is ``table``'s: a cascade at ``source_pos`` along ``source_dir`` or an infinite
    track through ``source_pos`` along ``source_dir``. Arrays broadcast; last axis (x, y, z).
    """
    pos = np.asarray(sensor_pos, dtype=float)
    axis = _unit(np.asarray(source_dir, dtype=float))
    pmt = _unit(np.asarray(sensor_dir, dtype=float))
    rel = pos - np.asarray(source_pos, dtype=float)
    along = np.einsum("...i,...i->...", rel, axis)
    if table.source == "cascade":
        distance = np.linalg.norm(rel, axis=-1)
        d0 = rel / np.maximum(distance, 1e-12)[..., None]
        cos_eta = np.clip(along / np.maximum(distance, 1e-12), -1.0, 1.0)
        side = axis - cos_eta[..., None] * d0
        norm = np.linalg.norm(side, axis=-1, keepdims=True)
        d1 = np.where(norm > 1e-9, side / np.maximum(norm, 1e-12), _any_perpendicular(d0))
    else:
        perp = rel - along[..., None] * axis
        distance = np.linalg.norm(perp, axis=-1)
        norm = np.maximum(distance, 1e-12)[..., None]
        radial = np.where(norm > 1e-9, perp / norm, _any_perpendicular(axis))
        c0 = table.reference_cos_theta
        s0 = np.sqrt(1.0 - c0**2)
        d0 = c0 * axis + s0 * radial
        d1 = -s0 * axis + c0 * radial
        cos_eta = np.zeros_like(distance)
    d2 = np.cross(d0, d1)
    local = np.stack([np.einsum("...i,...i->...", pmt, d) for d in (d0, d1, d2)], axis=-1)
    return SensorGeometry(distance, cos_eta, local)


def _check_range(table: PhotonTable, distance: np.ndarray) -> None:
    low, high = float(table.distance_m[0]), float(table.distance_m[-1])
    bad = ~((distance >= low * (1 - 1e-6)) & (distance <= high * (1 + 1e-6)))
    if bad.any():
        value = float(np.asarray(distance)[bad].flat[0])
        name = "distance_m" if table.source == "cascade" else "perpendicular distance_m"
        raise ValueError(f"{name} {value:.4g} m is outside the {table.medium} {table.source} table's range "
                         f"[{low:g}, {high:g}] m")


@dataclass(frozen=True)
class _Stencil:
    """Interpolation nodes of n sensors: distance nodes i-1..i+2 (clamped) with log-npe weights,
    the bracketing pair i, i+1 with the log-distance fraction f, and cos η nodes j, j+1 with fraction g."""

    r_nodes: np.ndarray  # (n, 4)
    r_weights: np.ndarray  # (n, 4): cubic Lagrange in log r where all four nodes exist, else linear
    f: np.ndarray
    j: np.ndarray
    j_next: np.ndarray
    g: np.ndarray
    pmt: np.ndarray  # (n, 3)


def _stencil(table: PhotonTable, geometry: SensorGeometry) -> _Stencil:
    distance = np.ravel(np.asarray(geometry.distance_m, dtype=float))
    _check_range(table, distance)
    shape = np.shape(geometry.distance_m)
    log_r = np.log(table.distance_m.astype(float))
    x = np.log(distance)
    last = len(log_r) - 1
    i = np.clip(np.searchsorted(log_r, x, side="right") - 1, 0, last - 1)
    f = np.clip((x - log_r[i]) / (log_r[i + 1] - log_r[i]), 0.0, 1.0)
    nodes = np.clip(i[:, None] + np.arange(-1, 3)[None, :], 0, last)
    cubic = (i >= 1) & (i + 2 <= last)
    xs = log_r[nodes]
    weights = np.ones((len(x), 4))
    for a in range(4):
        for b in range(4):
            if a != b:
                weights[:, a] *= (x - xs[:, b]) / np.where(cubic, xs[:, a] - xs[:, b], 1.0)
    linear = np.stack([np.zeros_like(f), 1.0 - f, f, np.zeros_like(f)], axis=1)
    weights = np.where(cubic[:, None], weights, linear)
    centres = table.cos_eta_nodes.astype(float)
    if len(centres) == 1:
        j = np.zeros_like(i)
        g = np.zeros_like(f)
        j_next = j
    else:
        cos_eta = np.broadcast_to(np.asarray(geometry.cos_eta, dtype=float), shape).ravel()
        j = np.clip(np.searchsorted(centres, cos_eta, side="right") - 1, 0, len(centres) - 2)
        g = np.clip((cos_eta - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
        j_next = j + 1
    pmt = np.broadcast_to(np.asarray(geometry.pmt_local, dtype=float), shape + (3,)).reshape(-1, 3)
    return _Stencil(nodes, weights, f, j, j_next, g, pmt)


def _folded(table: PhotonTable, r_index: np.ndarray, c_index: np.ndarray, pmt: np.ndarray,
            acceptance: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Return the acceptance-folded npe per θ bin, shape (n, n_θ), of cells (r_index, c_index)."""
    cos_t = table.mean_cos_theta[r_index, c_index].astype(float)  # (n, n_θ)
    sin_t = np.sqrt(np.maximum(1.0 - cos_t**2, 0.0))
    phi = table.phi_centres_rad
    p0, p1, p2 = (pmt[:, k][:, None, None] for k in range(3))
    base = cos_t[:, :, None] * p0 + sin_t[:, :, None] * np.cos(phi)[None, None, :] * p1
    across = sin_t[:, :, None] * np.sin(phi)[None, None, :] * p2
    weight = 0.5 * (acceptance(base + across) + acceptance(base - across))  # (n, n_θ, n_φ)
    return np.einsum("ntp,ntp->nt", table.npe[r_index, c_index].astype(float), weight)


def _folded_at_node(table: PhotonTable, stencil: _Stencil, r_index: np.ndarray, acceptance) -> list[np.ndarray]:
    """Return the folded npe per θ bin at distance node ``r_index`` for cos η nodes j and j+1."""
    return [_folded(table, r_index, c, stencil.pmt, acceptance) for c in (stencil.j, stencil.j_next)]


def expected_npe(table: PhotonTable, geometry: SensorGeometry,
                 acceptance: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Return expected photo-electrons per GeV (cascade) or of the infinite track (track), shaped like distance_m.

    ``acceptance`` maps cos(photon direction, sensor axis) to the relative acceptance; by
    default the table's sensor's (``nurec.physics.sensors``). Interpolation: linear in cos η,
    cubic in log(npe) vs log(distance) (linear next to the table's ends or next to empty cells).
    """
    acceptance = acceptance or sensor_for(table.medium).acceptance
    stencil = _stencil(table, geometry)
    totals = []
    for k in range(4):
        low, high = _folded_at_node(table, stencil, stencil.r_nodes[:, k], acceptance)
        totals.append((1.0 - stencil.g) * low.sum(axis=1) + stencil.g * high.sum(axis=1))
    totals = np.stack(totals, axis=1)
    used = stencil.r_weights != 0
    positive = np.all((totals > 0) | ~used, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(used & positive[:, None], np.log(np.where(totals > 0, totals, 1.0)), 0.0)
        logarithmic = np.exp(np.sum(stencil.r_weights * logs, axis=1))
    linear = (1.0 - stencil.f) * totals[:, 1] + stencil.f * totals[:, 2]
    return np.where(positive, logarithmic, linear).reshape(np.shape(geometry.distance_m))


def expected_npe_cascade(table: PhotonTable, sensor_pos, sensor_dir, vertex, direction, em_energy_gev) -> np.ndarray:
    """Return expected photo-electrons of sensors from a point EM cascade of ``em_energy_gev``."""
    energy = np.asarray(em_energy_gev, dtype=float)
    if not np.all(np.isfinite(energy)) or np.any(energy < 0):
        raise ValueError("em_energy_gev must be finite and ≥ 0")
    return energy * expected_npe(table, sensor_geometry(table, sensor_pos, sensor_dir, vertex, direction))


_QUANTILES = np.linspace(0.0, 1.0, 513)


def _row_index(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return, per row, how many of its (non-decreasing) entries are ≤ each value, minus one."""
    n, m = rows.shape
    span = 2.0 * (max(float(np.nanmax(np.abs(rows))), float(np.nanmax(np.abs(values)))) + 1.0)
    offset = span * np.arange(n)[:, None]
    flat = np.searchsorted((rows + offset).ravel(), (values + offset).ravel(), side="right")
    return flat.reshape(values.shape) - m * np.arange(n)[:, None] - 1


def _node_cdfs(table: PhotonTable, geometry: SensorGeometry, acceptance) -> tuple[np.ndarray, ...]:
    """Return (CDF at the delay edges at the nearer and the farther distance node, fraction f) per sensor.

    At each node the cos η neighbours' delay histograms are mixed, each class weighted by its
    acceptance-folded charge.
    """
    stencil = _stencil(table, geometry)
    n_class = table.delay_pdf.shape[2]
    nodes = []
    for k in (1, 2):
        r = stencil.r_nodes[:, k]
        pdf = np.zeros((len(r), table.delay_pdf.shape[3]))
        parts = _folded_at_node(table, stencil, r, acceptance)
        for c, part, w in zip((stencil.j, stencil.j_next), parts, (1 - stencil.g, stencil.g), strict=True):
            per_class = np.stack([part[:, table.theta_class == m].sum(axis=1) for m in range(n_class)], axis=1)
            pdf += np.einsum("nk,nkt->nt", w[:, None] * per_class, table.delay_pdf[r, c].astype(float))
        total = pdf.sum(axis=1, keepdims=True)
        cdf = np.cumsum(pdf, axis=1) / np.where(total > 0, total, 1.0)
        nodes.append(np.concatenate([np.zeros((len(r), 1)), cdf], axis=1))
    return nodes[0], nodes[1], stencil.f


def _invert(cdf: np.ndarray, edges: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Return the delays at probabilities ``u`` (n, k) of piecewise-linear CDFs (n, len(edges))."""
    k = np.clip(_row_index(cdf, u), 0, len(edges) - 2)
    low = np.take_along_axis(cdf, k, axis=1)
    high = np.take_along_axis(cdf, k + 1, axis=1)
    fraction = np.clip(np.where(high > low, (u - low) / np.where(high > low, high - low, 1.0), 0.0), 0.0, 1.0)
    return edges[k] + fraction * (edges[k + 1] - edges[k])


def _delay_quantiles(table: PhotonTable, geometry: SensorGeometry, acceptance) -> np.ndarray:
    """Return each sensor's delays [ns] at the probabilities ``_QUANTILES`` (NaN rows: no light).

    The two distance nodes' quantile functions are interpolated (log-distance fraction), so a
    delay distribution that stretches with distance is carried along rather than mixed.
    """
    near, far, f = _node_cdfs(table, geometry, acceptance)
    edges = table.delay_edges_ns.astype(float)
    u = np.broadcast_to(_QUANTILES, (len(f), len(_QUANTILES)))
    t_near, t_far = _invert(near, edges, u), _invert(far, edges, u)
    has_near, has_far = near[:, -1:] > 0, far[:, -1:] > 0
    t_near = np.where(has_near, t_near, t_far)
    t_far = np.where(has_far, t_far, t_near)
    quantiles = (1.0 - f[:, None]) * t_near + f[:, None] * t_far
    return np.where(has_near | has_far, quantiles, np.nan)


def delay_cdf(table: PhotonTable, geometry: SensorGeometry, delay_ns,
              acceptance: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Return the CDF of the photo-electron delay after the direct time at ``delay_ns``.

    Shape: the sensors' shape + ``delay_ns``'s shape (the same delays for every sensor). The
    CDF is 0 below 0 and 1 at and beyond the table's delay_max_ns (light beyond it is not in
    the table); NaN where the table holds no light.
    """
    acceptance = acceptance or sensor_for(table.medium).acceptance
    quantiles = _delay_quantiles(table, geometry, acceptance)
    empty = np.isnan(quantiles[:, 0])
    quantiles = np.where(empty[:, None], 0.0, quantiles)
    delay = np.broadcast_to(np.asarray(delay_ns, dtype=float).ravel(), (len(quantiles), np.size(delay_ns)))
    k = np.clip(_row_index(quantiles, delay), 0, len(_QUANTILES) - 2)
    low = np.take_along_axis(quantiles, k, axis=1)
    high = np.take_along_axis(quantiles, k + 1, axis=1)
    step = _QUANTILES[1] - _QUANTILES[0]
    inside = np.where(high > low, (delay - low) / np.where(high > low, high - low, 1.0), 1.0)
    values = np.clip(_QUANTILES[k] + np.clip(inside, 0.0, 1.0) * step, 0.0, 1.0)
    values = np.where(delay < quantiles[:, :1], 0.0, np.where(delay >= quantiles[:, -1:], 1.0, values))
    values = np.where(empty[:, None], np.nan, values)
    return values.reshape(np.shape(geometry.distance_m) + np.shape(delay_ns))


def sample_delay_ns(table: PhotonTable, geometry: SensorGeometry, rng: np.random.Generator, size: int = 1,
                    acceptance: Callable[[np.ndarray], np.ndarray] | None = None,
                    rows: np.ndarray | None = None, quantiles: np.ndarray | None = None) -> np.ndarray:
    """Return delays [ns] drawn from each sensor's delay distribution: ``size`` per sensor, shape (n, size),
    or, with ``rows``, one for each entry of ``rows`` (a sensor index, e.g. of each photo-electron),
    shape (len(rows),) — each sensor's distribution is then built once however many draws it gets.

    Each draw inverts the two distance nodes' CDFs at one probability and interpolates the two
    delays (the quantile interpolation of ``delay_cdf``, evaluated only where it is drawn); NaN
    for sensors that see no light. ``quantiles`` (with ``rows``, one per entry) gives those
    probabilities instead of uniform draws, e.g. the earliest of N photo-electrons.
    """
    acceptance = acceptance or sensor_for(table.medium).acceptance
    near, far, f = _node_cdfs(table, geometry, acceptance)
    edges = table.delay_edges_ns.astype(float)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.intp)
        near, far, f = near[rows], far[rows], f[rows]
        size = 1
    u = rng.random((len(f), size)) if quantiles is None else np.asarray(quantiles, dtype=float).reshape(len(f), 1)
    t_near, t_far = _invert(near, edges, u), _invert(far, edges, u)
    has_near, has_far = near[:, -1:] > 0, far[:, -1:] > 0
    t_near = np.where(has_near, t_near, t_far)
    t_far = np.where(has_far, t_far, t_near)
    delays = np.where(has_near | has_far, (1.0 - f[:, None]) * t_near + f[:, None] * t_far, np.nan)
    return delays[:, 0] if rows is not None else delays


def direct_time_ns(table: PhotonTable, distance_m) -> np.ndarray:
    """Return the time [ns] from which the table's delays count, after the source time.

    Cascade: after the vertex time, r·K/c. Track: after the muon passes the sensor's point of
    closest approach, ρ·K/c (K from ``photon_mc.direct_time_factors``).
    """
    return np.asarray(distance_m, dtype=float) * table.time_factor / SPEED_OF_LIGHT_M_PER_NS
