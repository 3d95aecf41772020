"""Layered South Pole ice: depth-dependent absorption and effective scattering at 400 nm, and
the factor that turns a bulk-ice photon-table expectation into a layered-ice one.

The photon tables (``nurec.physics.tables``) are built for one homogeneous ice whose
coefficients are the depth averages of SPICE Mie (``nurec.physics.optics``). Real ice is
layered: the dust layer near 2,050 m depth absorbs up to 4.6 times more than that average,
the clear ice below 2,100 m up to 3.3 times less. This module ships the layer table and corrects the
absorption along the straight line from a light source to a sensor.

Where the numbers come from. ``tables/ice_layers.csv`` is a verbatim copy of GraphNeT's
``data/ice_properties/ice_transparency.parquet`` (github graphnet-team/graphnet, commit 368927d,
Apache-2.0; GraphNeT cites the SPICE Mie table of IceCube, "Measurement of South Pole ice
transparency with the IceCube LED calibration system", NIM A 711 (2013) 73, arXiv:1301.5361,
p. 31): 110 layers, 1398.4-2488.4 m depth, ~10 m apart, effective scattering length 1/b_e and
absorption length 1/a in metres, 0.1 m precision. SPICE Mie's original is ppc's/CLSim's
``icemodel.dat`` (layer centres 1398.47 + 10 k m, columns b_e(400), a dust parameter, δτ);
checked against CLSim's copy (``resources/ice/spice_mie/icemodel.dat``): the table's
scattering lengths are 1/b_e(400) to its rounding (26.7 m at 1948.5 m, 5.0 m at 2048.5 m), and
its absorption is the total a(400) of every layer, pure ice at the layer's temperature
included: 1/absorption_len = A e^{-B/400}(1 + 0.01 δτ) + a_dust, with a_dust linear in
icemodel.dat's dust column, fits the 20 layers checked to 0.2 % (without the pure-ice term,
1.6 %). Both lengths are therefore at 400 nm, the scattering ones effective (λ_s/(1 - g)).
GraphNeT's depths differ from SPICE's layer centres by up to 0.5 m; they are kept as shipped.
The averages reproduce ``optics``: the mean over the 110 layers of 1/scattering_len and
1/absorption_len is 0.042264 m⁻¹ and 0.012084 m⁻¹ (optics: b_e(400) = 0.04226, a(400) = 0.01208);
the piecewise-linear profile below, integrated over the column 1393.4-2493.4 m (the layers'
1,100 m), averages 0.042255 m⁻¹ and 0.012081 m⁻¹, so a vertical path through the whole column
gets a correction of 0.9991.

Profile. Coefficients are interpolated linearly in depth between the layer depths (continuous,
so a fit sees no jumps when a vertex moves across a layer boundary) and held at the first and
last layer's values outside 1398.4-2488.4 m. Held, the ends make the integral over the column
(half a layer beyond each end depth) equal the sum of the layers' values × 10 m, as for SPICE's
layers of constant coefficients; IceCube's DOMs sit at 1450-2450 m. Above 1398 m and below
2488 m the real ice is dustier still (icemodel.dat), so light from a source far outside the
table is attenuated less here than in SPICE.

Correction. A table built for bulk absorption a_bulk holds exp(-a_bulk ℓ) along a photon's
path ℓ; in layered ice that is exp(-∫ a(z) dℓ). Along the straight line from source to
sensor the ratio is F = exp(-∫ (a(z) - a_bulk) ds); for a line from depth x1 to x2 of length
L, ∫ ... ds = L/|x2 - x1| × ∫_{x1}^{x2} (a(x) - a_bulk) dx, integrated exactly over the
piecewise-linear profile (a horizontal line, |x2 - x1| < 1 µm, takes the value at its depth).
F is symmetric in source and sensor and multiplies along a split path. Approximations:
- Wavelength: the correction at 400 nm applies to every wavelength. The depth-dependent part
  of a(λ) is the dust term ∝ (λ/400)^-κ (optics.py); weighted by the detected spectrum after
  a bulk-ice path of 0, 50, 100, 400 m its mean is 0.95, 0.98, 0.99, 1.00 (the light that
  survives longer paths is near 400 nm), and ln F of the exact spectral average differs from
  the 400-nm exponent by < 4 % for paths ≥ 50 m and |ln F| ≤ 2 (< 7.5 % at 0 m). The
  temperature dependence of the pure-ice term beyond 400 nm is neglected (δτ spans -5.8 to
  18.5 K over the column, ±13 % of a term worth ≤ 2.6e-3 m⁻¹ for light that has travelled
  ≥ 50 m: ≤ 3.5e-4 m⁻¹, against the dust layer's 0.044 m⁻¹ excess).
- Path: the straight line. Scattered light travels farther than the source-sensor distance,
  so in a layer that differs from the bulk the true factor is roughly F^(ℓ/d), ℓ/d > 1 the
  photons' mean path over the distance: the correction is the leading term, too mild deep
  inside a layer where ℓ ≫ d.
- Scattering is not corrected. An effective distance d × ⟨b_e⟩_path / b_e_bulk would be the
  natural next step, but it cannot be validated here: the photon Monte Carlo
  (``photon_mc.propagate``) takes a medium name, not medium parameters.
No tilt (the layers are horizontal planes), no anisotropy, no hole ice.

How to use. Positions are IceCube coordinates in metres (z up, z = 0 at 1948.07 m depth,
``nurec.geometry``), arrays of shape (..., 3) that broadcast together. Multiply a sensor's
bulk-ice expectation by ``path_absorption_correction(source_pos, sensor_pos)``, where the
source is where its light starts: the vertex for a cascade; for a track, the point whose
Cherenkov light reaches the sensor directly (the closest approach moved back along the track
by ρ / tan θc, ρ the sensor's distance to the track). A log-likelihood can instead add
``-path_excess_absorption(source_pos, sensor_pos)`` to log npe. Bound for samplers: with
d = |sensor_pos - source_pos|, 0 < factor ≤ exp(d × ``max_correction_rate_per_m()``)
(0.0085 m⁻¹: the clearest layer, 276 m absorption length at 2468 m). Every function takes an
optional ``layers`` (``load_layers(directory)``); the default is the package's table.

Files: ``nurec/physics/tables/ice_layers.csv`` (text, written deterministically), its SHA-256
and the SHA-256 of the source file in ``tables.json`` under ``ice_layers``; loading checks the
hash and a mismatch raises a one-line TableError naming the rebuild command
(``nurec tables ice-layers --from ../shared/data/graphnet/ice_properties/ice_transparency.parquet``,
from the repository root). The source is read only by that command, never at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from nurec.geometry import ICECUBE_ORIGIN_DEPTH_M
from nurec.io.files import write_atomic, write_json_atomic
from nurec.physics.optics import ICE_ABSORPTION_400_PER_M
from nurec.physics.tables import MANIFEST, TABLE_DIR, TableError, read_manifest, sha256_hex

LAYER_FILE = "ice_layers.csv"
MANIFEST_KEY = "ice_layers"
FORMAT_VERSION = 1
# Where the repository's tests and the build find GraphNeT's table (see ../shared/README.md).
SOURCE_HINT = "../shared/data/graphnet/ice_properties/ice_transparency.parquet"
_SOURCE_COLUMNS = ("depth", "scattering_len", "absorption_len")
_HEADER = "depth_m,effective_scattering_length_m,absorption_length_m"
_PREAMBLE = (
    "# SPICE Mie South Pole ice layers at 400 nm: depth below the surface [m], effective scattering",
    "# length 1/b_e [m], absorption length 1/a [m]; from GraphNeT ice_properties/ice_transparency.parquet",
    "# (NIM A 711 (2013) 73). Written by nurec.physics.ice_layers; see its docstring.",
)
# Below this depth difference [m] a path counts as horizontal: the mean over it is the value
# at its mid-depth (the divided difference would lose digits; its error is then < 1e-8 m⁻¹).
_HORIZONTAL_M = 1e-6


@dataclass(frozen=True)
class IceLayers:
    """The layer table: depths [m], increasing, and the 400-nm coefficients [1/m] there."""

    depth_m: np.ndarray
    effective_scattering_per_m: np.ndarray
    absorption_per_m: np.ndarray

    def __post_init__(self) -> None:
        depth = self.depth_m
        if depth.ndim != 1 or len(depth) < 2 or not np.all(np.diff(depth) > 0):
            raise ValueError("ice layer depths must be at least two, increasing")
        for name in ("effective_scattering_per_m", "absorption_per_m"):
            value = getattr(self, name)
            if value.shape != depth.shape or not np.all(np.isfinite(value) & (value > 0)):
                raise ValueError(f"ice layer {name} must be positive and finite, one per depth")

    @property
    def excess_cumulative(self) -> np.ndarray:
        """Return ∫ (a - a_bulk) d(depth) from the first layer depth to each layer depth [1]."""
        excess = self.absorption_per_m - ICE_ABSORPTION_400_PER_M
        steps = 0.5 * (excess[1:] + excess[:-1]) * np.diff(self.depth_m)
        return np.concatenate([[0.0], np.cumsum(steps)])


# ---------------------------------------------------------------------------------------------
# Files


def build_command(directory: str | Path | None = None, source: str | Path = SOURCE_HINT) -> str:
    """Return the command that writes the layer table into ``directory`` from ``source``."""
    parts = ["nurec tables ice-layers", f"--from {source}"]
    if directory is not None and Path(directory).resolve() != TABLE_DIR:
        parts.append(f"--out {directory}")
    return " ".join(parts)


def read_source(path: str | Path) -> np.ndarray:
    """Return GraphNeT's ice_transparency.parquet as rows (depth, scattering_len, absorption_len) [m], by depth."""
    import pyarrow.parquet as pq  # only the build reads Parquet

    table = pq.read_table(path)
    missing = [name for name in _SOURCE_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(missing)} (expected {', '.join(_SOURCE_COLUMNS)})")
    rows = np.column_stack([table.column(name).to_numpy().astype(float) for name in _SOURCE_COLUMNS])
    return rows[np.argsort(rows[:, 0], kind="stable")]


def layers_to_bytes(rows: np.ndarray) -> bytes:
    """Return the CSV bytes of layer ``rows`` (depth, effective scattering length, absorption length) [m].

    Shortest round-trip decimals (``repr``: 13.2 stays "13.2", bit for bit) and "\\n" line ends,
    so the same rows give the same bytes.
    """
    layers_from_rows(rows)  # refuse what could not be loaded
    lines = [*_PREAMBLE, _HEADER, *(",".join(repr(float(v)) for v in row) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


def layers_from_rows(rows: np.ndarray) -> IceLayers:
    """Return the layers of rows (depth, effective scattering length, absorption length) [m]."""
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] != 3 or not np.all(rows[:, 1:] > 0):
        raise ValueError("ice layer rows must be (depth, scattering length, absorption length), lengths > 0")
    return IceLayers(rows[:, 0].copy(), 1.0 / rows[:, 1], 1.0 / rows[:, 2])


def layers_from_bytes(data: bytes) -> IceLayers:
    """Return the layers in CSV bytes written by ``layers_to_bytes``."""
    lines = [line for line in data.decode().splitlines() if line and not line.startswith("#")]
    if not lines or lines[0] != _HEADER:
        raise ValueError(f"ice layer table: expected the header '{_HEADER}'")
    return layers_from_rows(np.array([[float(v) for v in line.split(",")] for line in lines[1:]]).reshape(-1, 3))


def build_layers(source: str | Path, directory: str | Path = TABLE_DIR) -> Path:
    """Write ``ice_layers.csv`` from GraphNeT's table ``source`` into ``directory``; record it in tables.json."""
    source, directory = Path(source), Path(directory)
    rows = read_source(source)
    data = layers_to_bytes(rows)
    directory.mkdir(parents=True, exist_ok=True)
    path = write_atomic(directory / LAYER_FILE, data)
    manifest = read_manifest(directory)
    manifest[MANIFEST_KEY] = {
        "file": LAYER_FILE, "sha256": sha256_hex(data), "bytes": len(data), "format_version": FORMAT_VERSION,
        "build_command": build_command(directory), "source": source.name,
        "source_sha256": sha256_hex(source.read_bytes()), "layers": len(rows),
    }
    write_json_atomic(directory / MANIFEST, manifest)
    return path


def load_layers(directory: str | Path = TABLE_DIR) -> IceLayers:
    """Return the layer table of ``directory`` after checking its SHA-256 against tables.json.

    Kept in memory until the file or the manifest changes (size or modification time).
    """
    directory = Path(directory).resolve()
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
                   for p in (directory / LAYER_FILE, directory / MANIFEST))
    return _load_cached(str(directory), stamps)


@cache
def _load_cached(directory: str, stamps: tuple) -> IceLayers:
    path = Path(directory) / LAYER_FILE
    hint = f"rebuild it with `{build_command(directory)}`"
    entry = read_manifest(directory).get(MANIFEST_KEY)
    if entry is None or not path.exists():
        raise TableError(f"{path}: no ice layer table; {hint}")
    data = path.read_bytes()
    if sha256_hex(data) != entry["sha256"]:
        raise TableError(f"{path}: SHA-256 does not match {MANIFEST}; {hint}")
    return layers_from_bytes(data)


# ---------------------------------------------------------------------------------------------
# Profiles and the path correction


def depth_of_z(z_m) -> np.ndarray:
    """Return the depth below the surface [m] of IceCube coordinate ``z_m`` (z up, 0 at 1948.07 m)."""
    return ICECUBE_ORIGIN_DEPTH_M - np.asarray(z_m, dtype=float)


def absorption_per_m(depth_m, layers: IceLayers | None = None) -> np.ndarray:
    """Return the absorption coefficient a(400 nm) [1/m] at ``depth_m`` (held beyond the table)."""
    layers = load_layers() if layers is None else layers
    return np.interp(np.asarray(depth_m, dtype=float), layers.depth_m, layers.absorption_per_m)


def effective_scattering_per_m(depth_m, layers: IceLayers | None = None) -> np.ndarray:
    """Return the effective scattering coefficient b_e(400 nm) [1/m] at ``depth_m`` (held beyond the table)."""
    layers = load_layers() if layers is None else layers
    return np.interp(np.asarray(depth_m, dtype=float), layers.depth_m, layers.effective_scattering_per_m)


def _excess_integral(depth_m: np.ndarray, layers: IceLayers) -> np.ndarray:
    """Return ∫ (a - a_bulk) d(depth) from the first layer depth to ``depth_m`` (exact, piecewise linear)."""
    nodes = layers.depth_m
    excess = layers.absorption_per_m - ICE_ABSORPTION_400_PER_M
    inside = np.clip(depth_m, nodes[0], nodes[-1])
    i = np.clip(np.searchsorted(nodes, inside, side="right") - 1, 0, len(nodes) - 2)
    t = inside - nodes[i]
    slope = (excess[i + 1] - excess[i]) / (nodes[i + 1] - nodes[i])
    within = layers.excess_cumulative[i] + t * (excess[i] + 0.5 * slope * t)
    # Held values beyond the ends: linear tails.
    return (within + excess[0] * np.minimum(depth_m - nodes[0], 0.0)
            + excess[-1] * np.maximum(depth_m - nodes[-1], 0.0))


def path_excess_absorption(source_pos, sensor_pos, layers: IceLayers | None = None) -> np.ndarray:
    """Return ∫ (a(z) - a_bulk) ds [1] along the straight line between the positions (IceCube, m).

    ``source_pos`` and ``sensor_pos`` are arrays of shape (..., 3) that broadcast together; the
    result has their broadcast shape without the last axis. a at 400 nm, a_bulk =
    ``optics.ICE_ABSORPTION_400_PER_M``; negative where the path is clearer than the bulk.
    """
    layers = load_layers() if layers is None else layers
    source, sensor = np.asarray(source_pos, dtype=float), np.asarray(sensor_pos, dtype=float)
    length_m = np.linalg.norm(sensor - source, axis=-1)
    top, bottom = depth_of_z(source[..., 2]), depth_of_z(sensor[..., 2])
    rise_m = bottom - top
    horizontal = np.abs(rise_m) < _HORIZONTAL_M
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (_excess_integral(bottom, layers) - _excess_integral(top, layers)) / rise_m
    level = absorption_per_m(0.5 * (top + bottom), layers) - ICE_ABSORPTION_400_PER_M
    return length_m * np.where(horizontal, level, mean)


def path_absorption_correction(source_pos, sensor_pos, layers: IceLayers | None = None) -> np.ndarray:
    """Return the factor exp(-∫ (a(z) - a_bulk) ds) for bulk-ice expectations (see the module docstring).

    Positions in IceCube coordinates [m], shapes (..., 3) that broadcast; the correction at 400 nm
    is applied to the whole detected spectrum.
    """
    return np.exp(-path_excess_absorption(source_pos, sensor_pos, layers))


def max_correction_rate_per_m(layers: IceLayers | None = None) -> float:
    """Return max over depths of a_bulk - a(z) [1/m]: the factor over a distance d is ≤ exp(d × this)."""
    layers = load_layers() if layers is None else layers
    # The profile is linear between layers and held beyond them: its extremes are at layers.
    return float(ICE_ABSORPTION_400_PER_M - layers.absorption_per_m.min())
