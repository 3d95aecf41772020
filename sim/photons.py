"""Sample the photo-electrons of a batch of events without visiting every sensor.

Exact Poisson sampling of the expected charge of every (event, sensor) pair costs work
for all ~5000 IceCube DOMs (or ~64000 KM3NeT PMTs) per event, while an event lights up
a few dozen. This module draws from the same distribution with work that scales with the
light instead, by nested Poisson thinning: if N ~ Poisson(B) "bound" photo-electrons are
each kept with probability μ/B (with μ ≤ B), the kept ones are Poisson(μ); split over
several targets with probabilities μ_i/B, the counts are independent Poisson(μ_i).

1. Per event: the distance beyond which no module can expect more than
   ``CANDIDATE_NPE`` photo-electrons (an upper bound solved for the distance), and a
   cut on events whose light cannot reach the detector's bounding sphere at all.
2. Per (event, string): the z-interval of the string's modules within that distance of
   the track or the cascade (strings = vertical columns of modules, see module_columns).
3. Per (event, string): an upper bound B_string of the summed bounds of its modules
   (a unimodal function summed over modules ≤ its maximum + its integral / spacing; the
   integrals are closed forms: K0 for tracks). Dim strings draw N ~ Poisson(B_string)
   bound photo-electrons; most draw none and are done.
4. Those photo-electrons go to modules with probability u_m / B_string, u_m a cheap
   per-module envelope; a module that receives some gets its bound B_m (the photon tables'
   largest light at any sensor orientation and the shortest distance any of its sensors can
   have, the largest muon energy, the largest layered-ice correction; nurec.physics.folded
   makes these bounds exact) and keeps each with probability B_m / u_m. Bright strings
   (B_string above ``BRIGHT_COLUMN_NPE``) instead visit every module and draw Poisson(B_m).
5. Per (sensor, light component) of the modules with bound photo-electrons: bounds
   B_sc (the module's bound shared equally by its sensors), and the module's
   photo-electrons are spread over them with probability B_sc / B_m.
6. Only then are the exact expectations μ_sc of nurec.physics.light computed, for sensors
   that received a bound photo-electron, and each is kept with probability μ_sc / B_sc.

Bright modules (B_m above ``BRIGHT_BOUND_NPE`` in bright strings) draw Poisson(μ_sc)
directly. Modules whose bound is below ``CANDIDATE_NPE`` are not visited; summed over a
detector the light lost this way is well below one photo-electron per event.
tests/test_physics_light.py checks the sampled charge against the dense expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import special

from nurec.geometry import Geometry
from nurec.physics.folded import Envelope, table_envelope
from nurec.physics.light import (
    absorption_correction_rate_per_m,
    expected_npe_cascade,
    expected_npe_track,
    track_light_factor,
)
from nurec.physics.medium import Medium
from nurec.physics.muon import muon_energy_at_m
from nurec.physics.response import DetectorResponse
from nurec.physics.timing import cascade_direct_delay_ns, track_geometry

# Module pairs whose upper-bound expectation is below this are not visited [pe].
CANDIDATE_NPE = 1e-6
# Above this bound [pe], modules draw Poisson counts directly instead of thinning...
BRIGHT_BOUND_NPE = 30.0
# ...and strings visit all their modules instead of placing bound photo-electrons.
BRIGHT_COLUMN_NPE = 30.0
_MIN_DISTANCE_M = 1.0  # the regularisation used by nurec.physics.light
_SLACK = 1.0 + 1e-9  # keeps the bounds above the exact values despite rounding


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the dot products of the vectors along the last axis (broadcasting)."""
    return np.einsum("...i,...i->...", a, b)


@dataclass(frozen=True)
class ModuleColumns:
    """Modules grouped into vertical columns (strings), sorted by height.

    A string whose modules are not on one vertical line (within 1 m) is split into
    single-module columns, so any geometry works; only the speed-up is lost.
    """

    xy: np.ndarray  # (C, 2) [m]
    module_order: np.ndarray  # module indices, column by column, by increasing z
    start: np.ndarray  # (C,) offset of each column in module_order
    count: np.ndarray  # (C,)
    search_key: np.ndarray  # z + column * _COLUMN_STRIDE, increasing, for searchsorted
    module_radius_m: np.ndarray  # (n_modules,) max distance of a sensor from its module centre
    column_radius_m: np.ndarray  # (C,) max distance of a sensor from the column's axis point at its z
    min_spacing_m: np.ndarray  # (C,) smallest z distance between modules of the column (inf if one)
    max_radius_m: float
    centre: np.ndarray  # (3,) centre of the sensors' bounding box [m]
    module_xyz: tuple  # module centre x, y, z as contiguous 1-D arrays
    pmt_direction_xyz: tuple  # sensor pointing x, y, z as contiguous 1-D arrays
    radius_m: float  # all sensors lie within this distance of ``centre``
    sensor_order: np.ndarray  # sensor rows sorted by module
    sensor_start: np.ndarray  # (n_modules,)
    sensor_count: np.ndarray  # (n_modules,)


_COLUMN_STRIDE = 1.0e6


def module_columns(geometry: Geometry) -> ModuleColumns:
    """Return the (cached) column structure of ``geometry`` used to cull sensors."""
    cached = geometry._cache.get("sim_columns")
    if cached is not None:
        return cached
    pos = geometry.module_position
    n_modules = len(pos)
    strings = geometry.module_string
    _, string_index = np.unique(strings, return_inverse=True)
    # Vertical strings: all modules within 1 m of the string's mean x, y.
    n_str = string_index.max() + 1
    mean_xy = np.zeros((n_str, 2))
    np.add.at(mean_xy, string_index, pos[:, :2])
    mean_xy /= np.bincount(string_index, minlength=n_str)[:, None]
    off = np.hypot(*(pos[:, :2] - mean_xy[string_index]).T)
    bad = np.zeros(n_str, dtype=bool)
    np.logical_or.at(bad, string_index, off > 1.0)
    column = np.where(bad[string_index], n_str + np.arange(n_modules), string_index)
    _, column = np.unique(column, return_inverse=True)
    n_col = column.max() + 1
    order = np.lexsort((pos[:, 2], column))
    count = np.bincount(column, minlength=n_col)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    xy = np.zeros((n_col, 2))
    np.add.at(xy, column, pos[:, :2])
    xy /= count[:, None]
    if np.abs(pos[:, 2]).max(initial=0.0) * 4 > _COLUMN_STRIDE:
        raise ValueError(f"{geometry.name}: sensors further than {_COLUMN_STRIDE / 4:g} m from z = 0 are not supported")
    search_key = pos[order, 2] + column[order] * _COLUMN_STRIDE
    index = geometry.sensor_module_index
    radius = np.zeros(n_modules)
    np.maximum.at(radius, index, np.linalg.norm(geometry.position - pos[index], axis=1))
    # A string's column xy is its mean; modules may sit up to 1 m off it.
    radius_col = radius + np.hypot(*(pos[:, :2] - xy[column]).T)
    sensor_order = np.argsort(index, kind="stable")
    sensor_count = np.bincount(index, minlength=n_modules)
    sensor_start = np.concatenate([[0], np.cumsum(sensor_count)[:-1]])
    column_radius = np.zeros(n_col)
    np.maximum.at(column_radius, column, radius_col)
    z_sorted = pos[order, 2]
    gaps = np.diff(z_sorted)
    same_col = column[order][1:] == column[order][:-1]
    min_spacing = np.full(n_col, np.inf)
    np.minimum.at(min_spacing, column[order][1:][same_col], gaps[same_col])
    min_spacing = np.maximum(min_spacing, 1e-3)
    result = ModuleColumns(xy, order, start, count, search_key, radius, column_radius, min_spacing,
                           float(radius_col.max(initial=0.0)), geometry.center,
                           tuple(np.ascontiguousarray(pos[:, i]) for i in range(3)),
                           tuple(np.ascontiguousarray(geometry.direction[:, i]) for i in range(3)),
                           float(np.max(np.linalg.norm(geometry.position - geometry.center, axis=1))),
                           sensor_order, sensor_start, sensor_count)
    geometry._cache["sim_columns"] = result
    return result


def _expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (group index, position) for ranges [start, start + count) laid end to end."""
    group = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return group, np.repeat(starts - first, counts) + np.arange(counts.sum())


def _cut_distance(k: np.ndarray, length_m: float, power: int, threshold: float) -> np.ndarray:
    """Return an upper bound of the x solving k·exp(-x/length)/max(x, 1)^power = threshold.

    Fixed-point iteration x ← length·ln(k/(threshold·x^power)) from x = 1: the map is
    decreasing, so odd iterates lie above the root. Returns -1 where even x = 1 is below
    the threshold (nothing is visible).
    """
    x = np.ones_like(k)
    ratio = k / threshold
    for _ in range(7):
        x = length_m * np.log(np.maximum(ratio / np.maximum(x, 1.0) ** power, 1.0))
    return np.where(ratio > 1.0, np.maximum(x, _MIN_DISTANCE_M), -1.0)


def _zero_truncated_poisson(mean: np.ndarray, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return Poisson(mean) counts given they are ≥ 1, by inverting the cdf at u ∈ (e^-mean, 1)."""
    n = np.ones(len(mean), dtype=np.int64)
    large = mean > 20.0
    if large.any():  # (e^-20: a zero is practically never drawn)
        draw = rng.poisson(mean[large])
        while (draw == 0).any():  # P = e^-20 per draw
            zero = draw == 0
            draw[zero] = rng.poisson(mean[large][zero])
        n[large] = draw
    small = np.flatnonzero(~large)
    m, target = mean[small], u[small]
    p = m * np.exp(-m)
    cdf = np.exp(-m) + p
    k = 1
    active = np.flatnonzero(target > cdf)
    while len(active) and k < 200:
        k += 1
        p[active] *= m[active] / k
        cdf[active] += p[active]
        n[small[active]] = k
        active = active[target[active] > cdf[active]]
    return n


def segment_distance(start1: np.ndarray, span1: np.ndarray, start2: np.ndarray, height2: np.ndarray) -> np.ndarray:
    """Return the distances between segments start1 + s·span1 and start2 + t·(0, 0, height2), s, t ∈ [0, 1].

    Closest points of two segments by clamping (Ericson, Real-Time Collision Detection, 5.1.9).
    """
    r = start1 - start2
    a = _dot(span1, span1)
    e = height2**2
    f = height2 * r[:, 2]
    c = _dot(span1, r)
    b = span1[:, 2] * height2
    tiny = 1e-12
    a_safe, e_safe = np.maximum(a, tiny), np.maximum(e, tiny)
    denom = a * e - b**2
    s = np.where(denom > tiny * np.maximum(a * e, tiny), np.clip((b * f - c * e) / np.maximum(denom, tiny), 0, 1), 0.0)
    s = np.where(a <= tiny, 0.0, np.where(e <= tiny, np.clip(-c / a_safe, 0, 1), s))
    t = np.where(e <= tiny, 0.0, (b * s + f) / e_safe)
    low, high = t < 0, t > 1
    t = np.clip(t, 0, 1)
    s = np.where(a <= tiny, s, np.where(low, np.clip(-c / a_safe, 0, 1), np.where(high, np.clip((b - c) / a_safe, 0, 1), s)))
    # With a degenerate first segment, t is the projection of its point on the second.
    t = np.where(a <= tiny, np.clip(f / e_safe, 0, 1), t)
    closest = r + span1 * s[:, None]
    closest[:, 2] -= height2 * t
    return np.sqrt(_dot(closest, closest))


@dataclass
class PhotoElectrons:
    """Sampled photo-electrons: event row, sensor row, arrival time [ns], charge scale.

    A sensor's light component with more than ``max_pe_per_sensor`` photo-electrons keeps that
    many, each carrying the charge of ``scale``; its delays must then still give the first
    arrival of all of them (what a pulse's leading edge records): ``represents`` is the real
    count N of the group (0 when nothing was dropped), ``leads`` marks the one kept photo-
    electron that takes the earliest of the N delays and ``group`` numbers the groups.
    """

    event: np.ndarray
    sensor: np.ndarray
    direct_time_ns: np.ndarray
    distance_m: np.ndarray
    scale: np.ndarray
    from_track: np.ndarray  # the muon's light (else the vertex cascade's)
    represents: np.ndarray
    leads: np.ndarray
    group: np.ndarray

    def to_events(self, parent: np.ndarray) -> tuple[PhotoElectrons, np.ndarray]:
        """Return (these photo-electrons with ``event`` mapped through ``parent`` and sorted by it, the order taken)."""
        order = np.argsort(parent[self.event], kind="stable")
        values = {f.name: getattr(self, f.name)[order] for f in fields(self)}
        values["event"] = parent[self.event][order]
        return PhotoElectrons(**values), order


@dataclass(frozen=True)
class _Optics:
    """What every step of the sampling needs of the detector, the medium and the sensors.

    Track and cascade light come from the photon tables (nurec.physics.light); their envelopes
    bound a sensor's light at any orientation by distance (and cos η for cascades). The radial
    shapes the column sums integrate in closed form use the bulk lengths stretched by the
    layered ice's largest absorption correction (1/λ' = 1/λ - r).
    """

    cols: ModuleColumns
    medium: Medium
    response: DetectorResponse
    geometry: Geometry
    kmax: int
    sin_c: float
    cos_c: float
    cot_c: float
    cascade: Envelope  # bounds of the cascade tables' light per GeV, radial length att
    track: Envelope  # bounds of the bare track's light, radial length sinθc · att
    att: float  # the cascade bound's radial length [m], layered correction included
    track_length: float  # the track bound's radial length in ρ [m], layered correction included
    correction_rate: float  # layered absorption: correction ≤ exp(rate · path) [1/m]
    best_efficiency: float  # the detector's highest relative sensor efficiency
    efficiency_ratio: np.ndarray  # per sensor: its efficiency / the detector's highest

    @classmethod
    def of(cls, geometry: Geometry, medium: Medium, response: DetectorResponse) -> _Optics:
        # Bounds use the most efficient sensor; each sensor's exact expectation is then scaled
        # down to its own efficiency (DeepCore's high-QE DOMs).
        efficiency = geometry.efficiency
        best = float(efficiency.max(initial=1.0))
        cols = module_columns(geometry)
        theta_c = medium.cherenkov_angle_rad
        sin_c = float(np.sin(theta_c))
        att = float(medium.attenuation_length_m)
        rate = absorption_correction_rate_per_m(medium)
        return cls(cols, medium, response, geometry, int(cols.sensor_count.max()), sin_c, float(np.cos(theta_c)),
                   float(1.0 / np.tan(theta_c)), table_envelope(medium.name, "cascade", att),
                   table_envelope(medium.name, "track", sin_c * att), 1.0 / (1.0 / att - rate),
                   1.0 / (1.0 / (sin_c * att) - rate / sin_c), rate, best, efficiency / best)

    @property
    def r_max(self) -> float:
        return self.cols.max_radius_m

    @property
    def cascade_scale(self) -> float:
        """Return A with a module's cascade light per GeV ≤ A·e^{-d/att}/max(d, 1)², d its centre's distance minus its radius."""
        return (self.cascade.radial_scale * self.best_efficiency * self.kmax
                * np.exp(2.0 * self.r_max * self.correction_rate))

    @property
    def track_scale(self) -> float:
        """Return A with a module's bare-track light ≤ A·e^{-ρ/track_length}/max(ρ, 1), ρ its distance minus its radius."""
        return (self.track.radial_scale * self.best_efficiency * self.kmax
                * np.exp(2.0 * self.r_max * self.correction_rate / self.sin_c))


@dataclass(frozen=True)
class _Cuts:
    """Per event: whether it has a track, and the distances beyond which nothing passes CANDIDATE_NPE."""

    is_track: np.ndarray
    rho_cut: np.ndarray  # from the track [m], -1 where nothing is visible
    d_cut: np.ndarray  # from the cascade vertex [m], -1 where nothing is visible


@dataclass(frozen=True)
class _ColumnPairs:
    """(event, column) pairs with modules inside the cut distances, and the geometry of each pair."""

    event: np.ndarray
    column: np.ndarray
    first: np.ndarray  # index of the pair's first module in cols.search_key
    n_in: np.ndarray  # modules of the column within the interval
    perp_min2: np.ndarray  # squared closest distance of the column axis to the track line [m²]
    s2: np.ndarray  # 1 - uz² of the track
    track_ok: np.ndarray  # the track reaches the column
    q: np.ndarray  # squared horizontal distance of vertex and column [m²]
    a0: np.ndarray  # horizontal offset of the column along the track
    uz: np.ndarray  # vertical component of the track direction


@dataclass(frozen=True)
class _ColumnBounds:
    """Per column pair: the bound of its summed module bounds and the factors the modules reuse."""

    seg_dist: np.ndarray
    r_col: np.ndarray
    track_k: np.ndarray
    casc_k: np.ndarray
    bound: np.ndarray


@dataclass(frozen=True)
class _Landed:
    """Modules of thinned columns that received bound photo-electrons."""

    pair: np.ndarray  # column pair
    position: np.ndarray  # index in cols.search_key order
    count: np.ndarray  # bound photo-electrons received
    envelope: np.ndarray  # the module's envelope u_m


@dataclass(frozen=True)
class _Modules:
    """Candidate modules with their bounds."""

    event: np.ndarray
    module: np.ndarray
    bound: np.ndarray
    track_bound: np.ndarray
    casc_bound: np.ndarray

    def take(self, index: np.ndarray) -> _Modules:
        """Return the modules at ``index``."""
        return _Modules(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def sample_photoelectrons(sources, geometry: Geometry, medium: Medium, response: DetectorResponse,
                          rng: np.random.Generator) -> PhotoElectrons:
    """Return the photo-electrons of a batch (direct times and distances; delays added later).

    ``sources`` is a sim.detector.LightSources. Photo-electrons come sorted by event. The
    steps are those of the module docstring; the random numbers are drawn in this order.
    """
    optics = _Optics.of(geometry, medium, response)
    cuts = _cut_distances(optics, sources)
    pairs = _column_pairs(optics, sources, cuts)
    bounds = _column_bounds(optics, sources, pairs)
    bright_pairs, thin_pairs, n_col = _visited_columns(bounds.bound, rng)
    landed = _thinned_modules(optics, sources, pairs, bounds, thin_pairs, n_col, rng)
    group_b, position_b = _expand(pairs.first[bright_pairs], pairs.n_in[bright_pairs])
    col_pair = np.concatenate([landed.pair, bright_pairs[group_b]])
    module = optics.cols.module_order[np.concatenate([landed.position, position_b])]
    modules = _module_bounds(optics, sources, cuts, pairs, bounds, col_pair, module)
    modules, n_bound, direct_mode = _module_counts(modules, landed, rng)
    pair, sensor, n_cat, cat_bound, cat_direct = _sensor_counts(optics, modules, n_bound, direct_mode, rng)
    return _photoelectrons(optics, sources, cuts, modules, pair, sensor, n_cat, cat_bound, cat_direct, rng)


def _cut_distances(optics: _Optics, sources) -> _Cuts:
    """Step 1: per event, the distances beyond which no module can expect CANDIDATE_NPE."""
    is_track = sources.is_track & (sources.track_length_m > 0)
    k_track = track_light_factor(sources.muon_energy_gev, optics.medium) * optics.track_scale
    rho_cut = np.where(is_track, _cut_distance(k_track, optics.track_length, 1, CANDIDATE_NPE), -1.0)
    d_cut = _cut_distance(sources.cascade_em_energy_gev * optics.cascade_scale, optics.att, 2, CANDIDATE_NPE)
    # Beyond the tables' last distance a sensor sees no light.
    rho_cut = np.where(rho_cut >= 0, np.minimum(rho_cut, optics.track.folded.distance_range_m[1]), -1.0)
    d_cut = np.where(d_cut >= 0, np.minimum(d_cut, optics.cascade.folded.distance_range_m[1]), -1.0)
    return _Cuts(is_track, rho_cut, d_cut)


def _column_pairs(optics: _Optics, sources, cuts: _Cuts) -> _ColumnPairs:
    """Step 2: per (event, column), the z-interval of modules within the cut distances.

    Only events whose track segment or vertex comes that close to the detector's bounding
    sphere are looked at.
    """
    cols, r_max, sin_c, cot_c = optics.cols, optics.r_max, optics.sin_c, optics.cot_c
    is_track, rho_cut, d_cut = cuts.is_track, cuts.rho_cut, cuts.d_cut
    vertex, u = sources.vertex, sources.muon_direction
    rel_centre = cols.centre - vertex
    along_centre = np.clip(_dot(rel_centre, u), 0.0, np.where(is_track, sources.track_length_m, 0.0))
    track_gap = np.sqrt(_dot(rel_centre - along_centre[:, None] * u, rel_centre - along_centre[:, None] * u))
    # (a lit module sees an emission point on the segment at ρ/sinθc ≤ cut/sinθc)
    reach = ((rho_cut >= 0) & (track_gap <= cols.radius_m + (rho_cut + r_max) / sin_c)) | (
        (d_cut >= 0) & (np.sqrt(_dot(rel_centre, rel_centre)) <= cols.radius_m + d_cut + r_max))
    events_in = np.flatnonzero(reach)
    v_in, u_in = vertex[events_in], u[events_in]
    dx = cols.xy[None, :, 0] - v_in[:, None, 0]
    dy = cols.xy[None, :, 1] - v_in[:, None, 1]
    q = dx**2 + dy**2
    vz = v_in[:, 2:3]
    lo = np.full(q.shape, np.inf)
    hi = np.full(q.shape, -np.inf)
    # Track: perp²(h) = q - a0² + h²(1 - uz²) - 2 a0 uz h with h = z - vz.
    rt = np.where(rho_cut >= 0, rho_cut + r_max, -1.0)[events_in, None]
    a0 = dx * u_in[:, None, 0] + dy * u_in[:, None, 1]
    uz = u_in[:, 2:3]
    s2 = np.maximum(1.0 - uz**2, 1e-12)
    perp_min2 = np.maximum(q - a0**2 / s2, 0.0)
    ok = (rt >= 0) & (perp_min2 <= rt**2)
    h_star = a0 * uz / s2
    half = np.sqrt(np.maximum(rt**2 - perp_min2, 0.0) / s2)
    t_lo, t_hi = h_star - half, h_star + half
    # ...and the emission point l - ρ cotθc on the track (ρ ≥ perp_min):
    # along ∈ [perp_min·cotθc - r(1 + cotθc), L + (ρ + r)cotθc + r].
    a_min = np.sqrt(perp_min2) * cot_c - r_max * (1.0 + cot_c)
    a_max = (sources.track_length_m[events_in, None] + (rt + r_max) * cot_c + r_max)
    moving = np.abs(uz) > 1e-9
    safe_uz = np.where(moving, uz, 1.0)
    h1, h2 = (a_min - a0) / safe_uz, (a_max - a0) / safe_uz
    t_lo = np.where(moving, np.maximum(t_lo, np.minimum(h1, h2)), t_lo)
    t_hi = np.where(moving, np.minimum(t_hi, np.maximum(h1, h2)), t_hi)
    ok &= np.where(moving, True, (a0 >= a_min) & (a0 <= a_max)) & (t_lo <= t_hi)
    lo = np.where(ok, t_lo, lo)
    hi = np.where(ok, t_hi, hi)
    # Cascade: |h| ≤ sqrt(R² - q).
    rc = np.where(d_cut >= 0, d_cut + r_max, -1.0)[events_in, None]
    ok_c = (rc >= 0) & (q <= rc**2)
    c_half = np.sqrt(np.maximum(rc**2 - q, 0.0))
    lo = np.where(ok_c, np.minimum(lo, -c_half), lo)
    hi = np.where(ok_c, np.maximum(hi, c_half), hi)
    pair_l, pair_c = np.nonzero(lo <= hi)
    limit = _COLUMN_STRIDE / 4
    z_lo = np.clip(lo[pair_l, pair_c] + vz[pair_l, 0] - r_max, -limit, limit) + pair_c * _COLUMN_STRIDE
    z_hi = np.clip(hi[pair_l, pair_c] + vz[pair_l, 0] + r_max, -limit, limit) + pair_c * _COLUMN_STRIDE
    first = np.searchsorted(cols.search_key, z_lo, side="left")
    n_in = np.searchsorted(cols.search_key, z_hi, side="right") - first
    has = n_in > 0
    pair_l, pair_c, first, n_in = pair_l[has], pair_c[has], first[has], n_in[has]
    return _ColumnPairs(events_in[pair_l], pair_c, first, n_in, perp_min2[pair_l, pair_c], s2[pair_l, 0],
                        ok[pair_l, pair_c], q[pair_l, pair_c], a0[pair_l, pair_c], uz[pair_l, 0])


def _column_bounds(optics: _Optics, sources, pairs: _ColumnPairs) -> _ColumnBounds:
    """Step 3: per column pair, a bound on the summed bounds of its modules.

    For a function unimodal along the string, Σ_m g(z_m) ≤ max g + ∫ g dz / (smallest
    module spacing).
    """
    cols, sin_c = optics.cols, optics.sin_c
    pair_e, pair_c, first, n_in = pairs.event, pairs.column, pairs.first, pairs.n_in
    vertex, u = sources.vertex, sources.muon_direction
    r_col = cols.column_radius_m[pair_c]
    spacing = cols.min_spacing_m[pair_c]
    l_t = optics.track_length
    pm2 = pairs.perp_min2
    p = np.sqrt(pm2)
    # Modules lit by the track see an emission point on the segment at distance ρ/sinθc,
    # so ρ ≥ sinθc · (distance between the track segment and the column's modules).
    z_first = cols.search_key[first] - pair_c * _COLUMN_STRIDE
    z_last = cols.search_key[first + n_in - 1] - pair_c * _COLUMN_STRIDE
    col_start = np.column_stack([cols.xy[pair_c], z_first])
    seg_dist = segment_distance(vertex[pair_e], u[pair_e] * sources.track_length_m[pair_e, None],
                                col_start, z_last - z_first)
    p_lo = np.maximum(np.maximum(p, sin_c * seg_dist) - r_col, 0.0)
    g_max = np.exp(-p_lo / l_t) / np.maximum(p_lo, _MIN_DISTANCE_M)
    # ∫ e^{-(ρ-r)/L}/max(ρ - r, 1) dz along the string, ρ² = p² + (1 - uz²)(z - z*)²:
    # ≤ e^{r/L} p/(p - r) · 2 K0(p/L)/sqrt(1 - uz²) when p - r ≥ 1, else (with
    # 1/max(ρ - r, 1) ≤ (2 + r)/sqrt(ρ² + 1)) ≤ (2 + r) e^{(r+1)/L} 2 K0(sqrt(p² + 1)/L)/sqrt(1 - uz²).
    far = p - r_col >= 1.0
    p_eff = np.where(far, p, np.sqrt(pm2 + 1.0))
    factor = np.where(far, np.exp(r_col / l_t) * p / np.maximum(p - r_col, 1e-9),
                      (2.0 + r_col) * np.exp((r_col + 1.0) / l_t))
    integral = factor * 2.0 * special.k0e(p_eff / l_t) * np.exp(-p_eff / l_t) / np.sqrt(pairs.s2)
    # The muon is brightest at the vertex (its light factor grows with energy).
    track_k = np.where(pairs.track_ok,
                       track_light_factor(sources.muon_energy_gev[pair_e], optics.medium) * optics.track_scale, 0.0)
    col_track = np.minimum(n_in * g_max, g_max + integral / spacing) * track_k
    casc_k, col_casc = _column_cascade_bound(optics, sources, pairs, r_col, z_first, z_last, spacing)
    return _ColumnBounds(seg_dist, r_col, track_k, casc_k, (col_track + col_casc) * _SLACK)


def _column_cascade_bound(optics: _Optics, sources, pairs: _ColumnPairs, r_col: np.ndarray, z_first: np.ndarray,
                          z_last: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (the cascade factor per module bound, the bound of the column's summed cascade light).

    A module's cascade light is at most E·A·e^{-d/λ}/max(d, 1)² (A = optics.cascade_scale) at
    its smallest sensor distance d; summed over the column's modules with the unimodal rule.
    """
    att = optics.att
    pair_e = pairs.event
    qq = pairs.q
    sq = np.sqrt(qq)
    vz_pair = sources.vertex[pair_e, 2]
    dz_gap = np.maximum(np.maximum(z_first - vz_pair, vz_pair - z_last), 0.0)
    d_lo = np.maximum(np.sqrt(qq + dz_gap**2) - r_col, _MIN_DISTANCE_M)
    h_max = np.exp(-d_lo / att) / d_lo**2
    # ∫ e^{-(d-r)/λ}/max(d-r,1)² dz with d² = q + h²: for sqrt(q) - r ≥ 1,
    # ≤ e^{r/λ} (√q/(√q - r))² ∫ e^{-d/λ}/d² dh, and as d - √q ≥ h²/(2(√q + |h|)),
    # ∫ e^{-d/λ}/d² dh ≤ e^{-√q/λ}/√q · min(π, (sqrt(4πλ√q) + 8λ e^{-√q/4λ})/√q);
    # otherwise ≤ (2 + r)² e^{(r+1)/λ} π e^{-sqrt(q+1)/λ}/sqrt(q+1).
    far = sq - r_col >= 1.0
    sq_safe = np.maximum(sq, 1e-9)
    integral = np.where(
        far,
        np.exp(r_col / att) * (sq_safe / np.maximum(sq - r_col, 1e-9)) ** 2 * np.exp(-sq / att) / sq_safe
        * np.minimum(np.pi, (np.sqrt(4 * np.pi * att * sq) + 8 * att * np.exp(-sq / (4 * att))) / sq_safe),
        (2.0 + r_col) ** 2 * np.exp((r_col + 1.0) / att) * np.pi * np.exp(-np.sqrt(qq + 1.0) / att)
        / np.sqrt(qq + 1.0),
    )
    casc_k = sources.cascade_em_energy_gev[pair_e] * optics.cascade_scale
    return casc_k, np.minimum(pairs.n_in * h_max, h_max + integral / spacing) * casc_k


def _visited_columns(col_bound: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (bright column pairs, thinned column pairs, bound photo-electrons per pair).

    Bright columns are visited; dim ones only if a bound photo-electron lands (Poisson(B) ≥ 1).
    """
    bright_col = col_bound > BRIGHT_COLUMN_NPE
    uniform = rng.random(len(col_bound))
    visit = bright_col | (uniform > np.exp(-col_bound))
    thin_cols = np.flatnonzero(visit & ~bright_col)
    n_col = np.zeros(len(col_bound), dtype=np.int64)
    n_col[thin_cols] = _zero_truncated_poisson(col_bound[thin_cols], uniform[thin_cols], rng)
    visit = np.flatnonzero(visit)
    return visit[bright_col[visit]], visit[~bright_col[visit]], n_col


def _thinned_modules(optics: _Optics, sources, pairs: _ColumnPairs, bounds: _ColumnBounds, thin_pairs: np.ndarray,
                     n_col: np.ndarray, rng: np.random.Generator) -> _Landed:
    """Step 4 for thinned columns: their bound photo-electrons go to modules by an envelope u_m ≥ B_m.

    u_m is a cheap per-module bound (whose sum the column bound covers); only modules that
    receive a photo-electron get their bound B_m later and keep each with probability B_m/u_m.
    """
    cols, sin_c, l_t = optics.cols, optics.sin_c, optics.track_length
    first, n_in, pair_c = pairs.first, pairs.n_in, pairs.column
    r_col = bounds.r_col
    vz_pair = sources.vertex[pairs.event, 2]
    group, position = _expand(first[thin_pairs], n_in[thin_pairs])
    cp = thin_pairs[group]
    h = cols.search_key[position] - pair_c[cp] * _COLUMN_STRIDE - vz_pair[cp]
    qq_m = pairs.q[cp]
    along_axis = pairs.a0[cp] + pairs.uz[cp] * h
    perp_axis = np.maximum(np.sqrt(np.maximum(qq_m + h**2 - along_axis**2, 0.0)) - 1e-3, 0.0)  # rounding
    rho_env = np.maximum(np.maximum(perp_axis, sin_c * bounds.seg_dist[cp]) - r_col[cp], 0.0)
    d_env = np.maximum(np.sqrt(qq_m + h**2) - r_col[cp], _MIN_DISTANCE_M)
    envelope = (bounds.track_k[cp] * np.exp(-rho_env / l_t) / np.maximum(rho_env, _MIN_DISTANCE_M)
                + bounds.casc_k[cp] * np.exp(-d_env / optics.att) / d_env**2) * _SLACK
    cum = np.cumsum(envelope)
    pair_start = np.cumsum(n_in[thin_pairs]) - n_in[thin_pairs]
    base = np.where(pair_start > 0, cum[np.maximum(pair_start - 1, 0)], 0.0)
    which = np.repeat(np.arange(len(thin_pairs)), n_col[thin_pairs])
    target = base[which] + rng.random(len(which)) * bounds.bound[thin_pairs][which]
    slot = np.searchsorted(cum, target, side="right")
    slot = slot[slot < (pair_start + n_in[thin_pairs])[which]]
    landed, n_landed = np.unique(slot, return_counts=True)
    return _Landed(cp[landed], position[landed], n_landed, envelope[landed])


def _module_bounds(optics: _Optics, sources, cuts: _Cuts, pairs: _ColumnPairs, bounds: _ColumnBounds,
                   col_pair: np.ndarray, module: np.ndarray) -> _Modules:
    """Step 4: each candidate module's bound B_m: the tables' largest light at any sensor orientation
    at the shortest distance (and, for cascades, the range of cos η) any of its sensors can have,
    the largest muon energy, and the largest layered-ice correction."""
    cols, medium, cot_c, sin_c, rate = optics.cols, optics.medium, optics.cot_c, optics.sin_c, optics.correction_rate
    # Structure of arrays: gathers of 1-D columns are several times faster than of (n, 3) rows.
    vx, vy, vz = (np.ascontiguousarray(sources.vertex[:, i]) for i in range(3))
    ux, uy, uz = (np.ascontiguousarray(sources.muon_direction[:, i]) for i in range(3))
    cx, cy, cz = (np.ascontiguousarray(sources.direction[:, i]) for i in range(3))
    mod_x, mod_y, mod_z = cols.module_xyz
    event = pairs.event[col_pair]
    r = cols.module_radius_m[module]
    n_sensors = cols.sensor_count[module]
    rx, ry, rz = mod_x[module] - vx[event], mod_y[module] - vy[event], mod_z[module] - vz[event]
    dist = np.sqrt(rx * rx + ry * ry + rz * rz)
    d_lo = np.maximum(dist - r, _MIN_DISTANCE_M)
    along = rx * ux[event] + ry * uy[event] + rz * uz[event]
    rho = np.sqrt(np.maximum(dist**2 - along**2, 0.0))
    rho_lo = np.maximum(rho - r, 0.0)
    em_lo = along - r - (rho + r) * cot_c
    em_hi = along + r - rho_lo * cot_c
    length = sources.track_length_m[event]
    # Track light is only followed where the column passed the track cut (step 2).
    on_track = cuts.is_track[event] & (em_hi >= 0) & (em_lo <= length) & (bounds.track_k[col_pair] > 0)
    track_bound = np.zeros(len(event))
    if on_track.any():
        t = np.flatnonzero(on_track)
        muon_e = muon_energy_at_m(sources.muon_energy_gev[event[t]], np.maximum(em_lo[t], 0.0), medium)
        track_bound[t] = (track_light_factor(muon_e, medium) * optics.best_efficiency * n_sensors[t]
                          * optics.track.bound(rho_lo[t]) * np.exp(rate * (rho[t] + r[t]) / sin_c))
    # Cascade: the tables' largest light per GeV at the module's sensors' distances and angles to the axis.
    cos_eta = (rx * cx[event] + ry * cy[event] + rz * cz[event]) / np.maximum(dist, 1e-9)
    delta = np.where(dist - r > 1.0, 2.0 * r / np.maximum(dist - r, 1e-9), 10.0)
    casc_energy = sources.cascade_em_energy_gev[event] * optics.best_efficiency
    casc_bound = np.zeros(len(event))
    lit = np.flatnonzero(casc_energy > 0)
    casc_bound[lit] = (casc_energy[lit] * n_sensors[lit] * np.exp(rate * (dist[lit] + r[lit]))
                       * optics.cascade.bound(d_lo[lit], cos_eta[lit] - delta[lit], cos_eta[lit] + delta[lit]))
    bound = (track_bound + casc_bound) * _SLACK
    return _Modules(event, module, bound, track_bound, casc_bound)


def _module_counts(modules: _Modules, landed: _Landed,
                   rng: np.random.Generator) -> tuple[_Modules, np.ndarray, np.ndarray]:
    """Return (modules with bound photo-electrons or drawn directly, their counts, direct-draw flags).

    Thinned columns' modules keep each received photo-electron with probability B_m/u_m;
    bright columns' modules draw Poisson(B_m), and very bright ones (B_m above
    BRIGHT_BOUND_NPE) will draw their sensors' exact expectations directly.
    """
    bound = modules.bound
    n_thin = len(landed.pair)
    n_bound = np.empty(len(modules.event), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = np.where(landed.envelope > 0, np.minimum(bound[:n_thin] / landed.envelope, 1.0), 0.0)
    n_bound[:n_thin] = rng.binomial(landed.count, keep)
    n_bound[n_thin:] = rng.poisson(bound[n_thin:])
    direct_mode = np.zeros(len(modules.event), dtype=bool)
    direct_mode[n_thin:] = bound[n_thin:] > BRIGHT_BOUND_NPE
    sel = np.flatnonzero((n_bound > 0) | direct_mode)
    return modules.take(sel), n_bound[sel], direct_mode[sel]


def _sensor_counts(optics: _Optics, modules: _Modules, n_bound: np.ndarray, direct_mode: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Step 5: spread each module's bound photo-electrons over its (sensor, light component) bounds B_sc.

    A module's bounds hold for any sensor orientation, so each sensor gets an equal share of
    each component (a sharper per-sensor bound would cost more to evaluate than the tables'
    expectation it saves). Returns (module of each sensor row, sensor, bound photo-electrons per
    category, B_sc, direct-draw flags), the categories sensor-major (track, cascade).
    """
    cols = optics.cols
    m = modules
    pair, position = _expand(cols.sensor_start[m.module], cols.sensor_count[m.module])
    sensor = cols.sensor_order[position]
    share = 1.0 / cols.sensor_count[m.module]
    cat_bound = np.column_stack([(m.track_bound * share)[pair], (m.casc_bound * share)[pair]]).ravel() * _SLACK
    n_cat = np.zeros(len(cat_bound), dtype=np.int64)
    cat_direct = np.repeat(direct_mode[pair], 2)
    dim_pairs = np.flatnonzero(~direct_mode)
    if len(dim_pairs):
        # The module's bound photo-electrons go to (sensor, component) with probability B_sc/B.
        cum = np.cumsum(np.where(cat_direct, 0.0, cat_bound))
        cat_start = 2 * (np.cumsum(cols.sensor_count[m.module]) - cols.sensor_count[m.module])
        cat_end = cat_start + 2 * cols.sensor_count[m.module]
        base = np.where(cat_start > 0, cum[np.maximum(cat_start - 1, 0)], 0.0)
        photon_pair = np.repeat(dim_pairs, n_bound[dim_pairs])
        target = base[photon_pair] + rng.random(len(photon_pair)) * m.bound[photon_pair]
        category = np.searchsorted(cum, target, side="right")
        kept = category < cat_end[photon_pair]
        n_cat += np.bincount(category[kept], minlength=len(cat_bound))
    return pair, sensor, n_cat, cat_bound, cat_direct


def _photoelectrons(optics: _Optics, sources, cuts: _Cuts, modules: _Modules, pair: np.ndarray, sensor: np.ndarray,
                    n_cat: np.ndarray, cat_bound: np.ndarray, cat_direct: np.ndarray,
                    rng: np.random.Generator) -> PhotoElectrons:
    """Steps 6-7: exact expectations where needed, thinning to them, and the photo-electrons.

    Exact expectations are computed only for sensors with a bound photo-electron and every
    sensor of directly drawn modules; each bound photo-electron is real with probability
    μ/B_sc. Very bright sensors get max_pe_per_sensor photo-electrons carrying the charge.
    """
    medium, response, geometry = optics.medium, optics.response, optics.geometry
    vertex, u = sources.vertex, sources.muon_direction
    need = (n_cat[0::2] > 0) | (n_cat[1::2] > 0) | cat_direct[0::2]
    rows = np.flatnonzero(need)
    pair, sensor = pair[rows], sensor[rows]
    s_event = modules.event[pair]
    pos, pmt_dir = geometry.position[sensor], geometry.direction[sensor]
    casc_npe, casc_distance = expected_npe_cascade(pos, pmt_dir, vertex[s_event], sources.direction[s_event],
                                                   sources.cascade_em_energy_gev[s_event], medium)
    geo = track_geometry(pos, vertex[s_event], u[s_event], medium)
    emission = geo["emission_m"]
    on = np.flatnonzero(cuts.is_track[s_event] & (emission >= 0) & (emission <= sources.track_length_m[s_event]))
    track_npe = np.zeros(len(sensor))
    if len(on):
        e = s_event[on]
        muon_energy = muon_energy_at_m(sources.muon_energy_gev[e], emission[on], medium)
        emission_pos = vertex[e] + emission[on, None] * u[e]
        track_npe[on], _ = expected_npe_track(pos[on], pmt_dir[on], vertex[e], u[e], emission_pos, muon_energy,
                                              medium)
    ratio = optics.efficiency_ratio[sensor]
    # Exact expectations of the sensors' own efficiency (the bounds used the best one).
    mu = np.column_stack([track_npe, casc_npe]).ravel() * np.repeat(optics.best_efficiency * ratio, 2)
    cat_rows = (2 * rows[:, None] + np.arange(2)).ravel()
    n_cat, cat_bound, cat_direct = n_cat[cat_rows], cat_bound[cat_rows], cat_direct[cat_rows]
    # Thinning: each bound photo-electron is real with probability μ/B_sc.
    with np.errstate(invalid="ignore", divide="ignore"):
        keep_p = np.where(cat_bound > 0, np.minimum(mu / cat_bound, 1.0), 0.0)
    counts = np.where(cat_direct, rng.poisson(np.where(cat_direct, mu, 0.0)), rng.binomial(n_cat, keep_p))

    cap = response.max_pe_per_sensor
    kept_counts = np.minimum(counts, cap)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(kept_counts > 0, counts / np.maximum(kept_counts, 1), 0.0)
    direct = np.column_stack([geo["delay_ns"], cascade_direct_delay_ns(casc_distance, medium)]).ravel()
    distance = np.column_stack([geo["distance_m"], casc_distance]).ravel()
    cat_sensor = np.repeat(np.arange(len(sensor)), 2)
    pe_cat = np.repeat(np.arange(len(mu)), kept_counts)
    leads = np.zeros(len(pe_cat), dtype=bool)
    leads[np.cumsum(kept_counts)[kept_counts > 0] - kept_counts[kept_counts > 0]] = True
    # Thinned and bright strings were handled apart: restore the order by event.
    order = np.argsort(s_event[cat_sensor[pe_cat]], kind="stable")
    pe_cat, leads = pe_cat[order], leads[order]
    pe_sensor_pair = cat_sensor[pe_cat]
    capped = (counts > kept_counts)[pe_cat]
    return PhotoElectrons(
        event=s_event[pe_sensor_pair],
        sensor=sensor[pe_sensor_pair],
        direct_time_ns=direct[pe_cat],
        distance_m=distance[pe_cat],
        scale=scale[pe_cat],
        from_track=pe_cat % 2 == 0,  # mu alternates track, cascade per sensor
        represents=np.where(capped, counts[pe_cat], 0),
        leads=leads & capped,
        group=pe_cat,
    )
