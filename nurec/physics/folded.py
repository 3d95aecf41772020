"""Photon tables folded with their sensor's angular acceptance on a regular grid: fast expected charges.

``nurec.physics.tables.expected_npe`` folds the photon arrival directions of a table cell with
the sensor's acceptance on every call (~50 µs per sensor), too slow for a likelihood fit that
evaluates hundreds of sensors thousands of times, or for the simulator's sampling. Here that
fold is done once per table on a grid of sensor orientations, and lookups interpolate
multilinearly in (log distance, cos η, c_p, ψ) on log(npe):

- distance: the table's nodes (log-spaced); cos η: the table's bin centres (clamped outside);
- the sensor axis in the cell's local frame (d0, d1, d2) (``tables.sensor_geometry``):
  c_p = axis · d0 on ``N_AXIS_COS`` nodes in [-1, 1] (d0 points away from the source, so a
  sensor facing the source has c_p = -1), and ψ = atan2(|axis · d2|, axis · d1) on
  ``N_AXIS_AZIMUTH`` nodes in [0, π] (the tables are mirror-symmetric in d2).

Because interpolation is multilinear in log(npe), a value never exceeds the largest of its
cell's corners: ``Envelope`` turns the grid into exact upper bounds over ranges of
distance and cos η, which the simulator's thinning needs (sim/photons.py).
Against the direct fold (``tables.expected_npe``) the grid agrees to a few per cent
(tests/test_physics_folded.py). Distances below the table's first node are evaluated at it;
beyond the last node a sensor sees no light (a few 1e-8 pe per GeV in ice at 500 m).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from nurec.physics.sensors import sensor_for
from nurec.physics.tables import PhotonTable, _folded, load_table, sensor_geometry

N_AXIS_COS = 25
N_AXIS_AZIMUTH = 13
_LOG_FLOOR = np.log(1e-300)


@dataclass(frozen=True)
class FoldedTable:
    """A photon table folded with its sensor's acceptance: ``log_npe`` on (distance, cos η, c_p, ψ) nodes."""

    medium: str
    source: str
    log_distance: np.ndarray
    cos_eta: np.ndarray
    axis_cos: np.ndarray
    axis_azimuth: np.ndarray
    log_npe: np.ndarray  # (n_distance, n_cos_eta, N_AXIS_COS, N_AXIS_AZIMUTH)
    reference_cos_theta: float

    @property
    def distance_range_m(self) -> tuple[float, float]:
        """Return the first and last distance node [m]."""
        return float(np.exp(self.log_distance[0])), float(np.exp(self.log_distance[-1]))

    @property
    def npe(self) -> np.ndarray:
        """Return the grid's expected photo-electrons (per GeV for cascades)."""
        return np.exp(self.log_npe)


def _axis_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cos_p = np.linspace(-1.0, 1.0, N_AXIS_COS)
    psi = np.linspace(0.0, np.pi, N_AXIS_AZIMUTH)
    sin_p = np.sqrt(np.maximum(1.0 - cos_p**2, 0.0))
    axes = np.stack([np.broadcast_to(cos_p[:, None], (N_AXIS_COS, N_AXIS_AZIMUTH)),
                     sin_p[:, None] * np.cos(psi)[None, :], sin_p[:, None] * np.sin(psi)[None, :]], axis=-1)
    return cos_p, psi, axes.reshape(-1, 3)


def fold_table(table: PhotonTable) -> FoldedTable:
    """Return ``table`` folded with its sensor's acceptance on the grid of sensor orientations."""
    acceptance = sensor_for(table.medium).acceptance
    cos_p, psi, axes = _axis_grid()
    n_r, n_c = table.npe.shape[:2]
    values = np.empty((n_r, n_c, len(axes)))
    for r in range(n_r):
        for c in range(n_c):
            index = np.full(len(axes), r), np.full(len(axes), c)
            values[r, c] = _folded(table, *index, axes, acceptance).sum(axis=1)
    with np.errstate(divide="ignore"):
        log_npe = np.maximum(np.log(values), _LOG_FLOOR)
    return FoldedTable(table.medium, table.source, np.log(table.distance_m.astype(float)),
                       table.cos_eta_nodes.astype(float), cos_p, psi,
                       log_npe.reshape(n_r, n_c, N_AXIS_COS, N_AXIS_AZIMUTH), table.reference_cos_theta)


@cache
def folded_table(medium: str, source: str) -> FoldedTable:
    """Return the shipped ``source`` table of ``medium`` folded with its sensor (built once per process)."""
    return fold_table(load_table(medium, source))


def _cell(nodes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (lower node index, fraction) of each value in ascending ``nodes`` (clamped to the ends)."""
    if len(nodes) == 1:
        return np.zeros(values.shape, dtype=np.intp), np.zeros(values.shape)
    i = np.clip(np.searchsorted(nodes, values, side="right") - 1, 0, len(nodes) - 2)
    f = np.clip((values - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    return i, f


def _axis_coordinates(pmt_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos_p = np.clip(pmt_local[..., 0], -1.0, 1.0)
    psi = np.arctan2(np.abs(pmt_local[..., 2]), pmt_local[..., 1])
    return cos_p, psi


def lookup_npe(folded: FoldedTable, distance_m, cos_eta, pmt_local) -> np.ndarray:
    """Return expected photo-electrons at (distance, cos η, sensor axis in the local frame); 0 beyond the table.

    Arrays broadcast; ``pmt_local`` has a last axis of 3. Cascade values are per GeV.
    """
    distance = np.asarray(distance_m, dtype=float)
    pmt_local = np.asarray(pmt_local, dtype=float)
    shape = np.broadcast_shapes(distance.shape, np.shape(cos_eta), pmt_local.shape[:-1])
    distance = np.broadcast_to(distance, shape).ravel()
    cos_eta = np.broadcast_to(np.asarray(cos_eta, dtype=float), shape).ravel()
    cos_p, psi = _axis_coordinates(np.broadcast_to(pmt_local, shape + (3,)).reshape(-1, 3))
    low, high = folded.distance_range_m
    ir, fr = _cell(folded.log_distance, np.log(np.clip(distance, low, high)))
    ic, fc = _cell(folded.cos_eta, cos_eta)
    ip, fp = _cell(folded.axis_cos, cos_p)
    ia, fa = _cell(folded.axis_azimuth, psi)
    n_c, n_p, n_a = folded.log_npe.shape[1:]
    flat = folded.log_npe.ravel()
    total = np.zeros(len(distance))
    step_c = 1 if n_c > 1 else 0
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (step_c, fc)):
            base = ((ir + dr) * n_c + ic + dc) * n_p
            for dp, wp in ((0, 1.0 - fp), (1, fp)):
                row = (base + ip + dp) * n_a + ia
                w = wr * wc * wp
                total += w * ((1.0 - fa) * flat[row] + fa * flat[row + 1])
    npe = np.where(distance <= high * (1 + 1e-9), np.exp(total), 0.0)
    return npe.reshape(shape)


def cascade_npe_per_gev(medium: str, sensor_pos, sensor_dir, vertex, direction) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons per GeV of EM energy, distance [m]) of sensors from a point cascade.

    The medium's standard sensor (``nurec.physics.sensors``) at ``sensor_pos`` facing ``sensor_dir``;
    arrays broadcast, last axis (x, y, z).
    """
    folded = folded_table(medium, "cascade")
    geometry = sensor_geometry(load_table(medium, "cascade"), sensor_pos, sensor_dir, vertex, direction)
    return lookup_npe(folded, geometry.distance_m, geometry.cos_eta, geometry.pmt_local), geometry.distance_m


@dataclass(frozen=True)
class Envelope:
    """Upper bounds of a folded table over ranges of distance and cos η, for any sensor orientation.

    ``beyond``: (n_distance, n_cos_eta) the largest value, over sensor orientations, at any
    distance from node i on; ``radial_scale``: A with npe(d) ≤ A e^{-d/λ}/max(d, 1)^p for every
    cos η and orientation (p = 2 for a point cascade, 1 for a track's perpendicular distance), λ
    the length the envelope was built for.
    """

    folded: FoldedTable
    beyond: np.ndarray
    length_m: float
    power: int
    radial_scale: float

    def bound(self, distance_lo, cos_eta_lo=-1.0, cos_eta_hi=1.0) -> np.ndarray:
        """Return a bound of npe (per GeV for cascades) for distances ≥ ``distance_lo`` and cos η in [lo, hi]."""
        distance_lo = np.asarray(distance_lo, dtype=float)
        low, high = self.folded.distance_range_m
        # The cell holding the smallest distance: nodes from its lower one outward cover every larger distance.
        i, _ = _cell(self.folded.log_distance, np.log(np.clip(distance_lo, low, high)))
        first, last = _node_range(self.folded.cos_eta, np.broadcast_to(cos_eta_lo, len(i)),
                                  np.broadcast_to(cos_eta_hi, len(i)))
        # Beyond the table's last distance a sensor sees no light (lookup_npe).
        return np.where(distance_lo <= high * (1 + 1e-9), _range_max(self.beyond, i, first, last), 0.0)


_SMALL_SPAN = 4


def _range_max(table: np.ndarray, i: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Return max(table[i, first..last]) per row: most ranges span a few nodes and gather them; others mask."""
    n_nodes = table.shape[1]
    result = np.zeros(len(i))
    for k in range(_SMALL_SPAN):
        node = first + k
        result = np.where(node <= last, np.maximum(result, table[i, np.minimum(node, n_nodes - 1)]), result)
    wide = np.flatnonzero(last - first >= _SMALL_SPAN)
    if len(wide):
        index = np.arange(n_nodes)[None, :]
        inside = (index >= first[wide, None]) & (index <= last[wide, None])
        result[wide] = np.max(np.where(inside, table[i[wide]], 0.0), axis=1)
    return result


def _node_range(nodes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the first and last node of the cells that [lo, hi] touches (the interpolation corners)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if len(nodes) == 1:
        zero = np.zeros(len(lo), dtype=np.intp)
        return zero, zero
    first, _ = _cell(nodes, lo)
    last, f_last = _cell(nodes, hi)
    return first, np.minimum(last + (f_last > 0) + (hi > nodes[-1]), len(nodes) - 1)


@cache
def table_envelope(medium: str, source: str, length_m: float) -> Envelope:
    """Return the bounds the simulator samples ``source`` light under, for ``medium``'s folded table.

    The radial shape is e^{-d/length_m}/max(d, 1)² for cascades and e^{-ρ/length_m}/max(ρ, 1) for tracks.
    """
    folded = folded_table(medium, source)
    power = 2 if source == "cascade" else 1
    per_cell = folded.npe.max(axis=(2, 3))  # (n_distance, n_cos_eta)
    beyond = np.maximum.accumulate(per_cell[::-1], axis=0)[::-1]
    # Between nodes i and i+1 the envelope is beyond[i]; the radial shape is smallest at d_{i+1}.
    distance = np.exp(folded.log_distance)
    shape_next = np.exp(-distance[1:] / length_m) / np.maximum(distance[1:], 1.0) ** power
    scale = float(np.max(beyond[:-1].max(axis=1) / shape_next))
    return Envelope(folded, beyond, length_m, power, scale)


def track_npe(medium: str, sensor_pos, sensor_dir, anchor, direction) -> tuple[np.ndarray, np.ndarray]:
    """Return (expected photo-electrons of a bare infinite muon, perpendicular distance ρ [m]) of sensors.

    The medium's standard sensor at ``sensor_pos`` facing ``sensor_dir``; the track passes
    ``anchor`` along ``direction``. Arrays broadcast, last axis (x, y, z).
    """
    folded = folded_table(medium, "track")
    geometry = sensor_geometry(load_table(medium, "track"), sensor_pos, sensor_dir, anchor, direction)
    return lookup_npe(folded, geometry.distance_m, 0.0, geometry.pmt_local), geometry.distance_m
