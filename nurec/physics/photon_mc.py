"""Vectorised photon-tracking Monte Carlo: Cherenkov emission, scattering, absorption, recording.

Photons are tracked in batches (numpy arrays), each photon carrying a weight in units of
sensor-effective-area × photons (m²): the wavelength is drawn from the Frank–Tamm spectrum
weighted by the sensor's head-on effective area (``nurec.physics.sensors``), so a fluence
estimate built from the weights is directly the expected number of photo-electrons of a
head-on sensor with unit relative acceptance. Absorption is a weight exp(-path/λ_abs(λ))
applied where a photon is recorded; scattering lengths and phase functions come from
``nurec.physics.optics``; photons travel at the group velocity c/n_group(λ).

Sources:
- a point electromagnetic cascade at the origin along +z, per GeV of EM energy: the light of
  a Cherenkov-equivalent track length of 5.3207 m/GeV in ice of density 0.9216 g/cm³ (scaled by
  the density for water; L. Rädel & C. Wiebusch, Astropart. Phys. 38 (2012) 53 and 44 (2013)
  102, electrons: l = α E^β, α = 532.07 cm/GeV, β ≈ 1), emitted with their angular
  distribution dN/dΩ ∝ a exp(b |cos θ - 1/n|^c) + d (a = 4.27033, b = -6.02527, c = 0.29887,
  d = -0.00103; 1/n taken at each photon's wavelength). The cascade is point-like: its
  longitudinal extent (shower maximum ~1-2 m from the vertex, Rädel & Wiebusch 2013) is neglected.
- a bare muon (β = 1) along +z: photons on the Cherenkov cone cos θ = 1/n(λ), per metre of track.

Propagation (``propagate``) yields the straight segments between scatters; recorders turn
them into crossings of spherical or cylindrical shells (the tables) or entries into sensor
spheres (direct tracking). Everything random comes from the ``numpy.random.Generator`` passed
in, drawn in a fixed order, so a seed fixes every number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from nurec.physics.medium import SPEED_OF_LIGHT_M_PER_NS
from nurec.physics.optics import (
    WAVELENGTH_BAND_NM,
    absorption_length_m,
    check_medium,
    n_group,
    n_phase,
    sample_scattering_cos,
    scattering_length_m,
)
from nurec.physics.sensors import sensor_for

FINE_STRUCTURE = 1.0 / 137.035999084  # CODATA 2018

# Rädel & Wiebusch (2013), electrons: Cherenkov-equivalent track length per GeV in ice and the
# angular distribution parameters; ice density of their simulation (0.9216 g/cm³).
CASCADE_TRACK_LENGTH_M_PER_GEV_ICE = 5.3207078881
RADEL_ICE_DENSITY_G_CM3 = 0.9216
CASCADE_ANGULAR_PARAMETERS = (4.27033, -6.02527, 0.29887, -0.00103)
# Sea-water density used to scale the track length (Jpp JPhysics/JConstants.hh, as in medium.py).
DENSITY_G_CM3 = {"ice": 0.9216, "water": 1.038}

SOURCES = ("cascade", "track")
_SPECTRUM_STEP_NM = 0.25


@dataclass(frozen=True)
class Spectrum:
    """The detected Cherenkov spectrum of a medium and its sensor.

    ``wavelength_nm`` grid and ``cdf`` (normalised) of dN/dλ × A_eff(λ) for a β = 1 particle;
    ``yield_m2_per_m``: ∫ dN/dλ dx × A_eff(λ) dλ, area-weighted photons per metre of track.
    """

    wavelength_nm: np.ndarray
    cdf: np.ndarray
    yield_m2_per_m: float


@cache
def detected_spectrum(medium: str) -> Spectrum:
    """Return the Frank–Tamm spectrum × the medium's sensor effective area, over the medium's band."""
    low, high = WAVELENGTH_BAND_NM[check_medium(medium)]
    lam = np.arange(low, high + 0.5 * _SPECTRUM_STEP_NM, _SPECTRUM_STEP_NM)
    n = n_phase(medium, lam)
    # d²N/dx dλ = 2πα (1 - 1/n²) / λ²  [per m per nm with λ in nm: × 1e9]
    density = 2.0 * np.pi * FINE_STRUCTURE * 1e9 * (1.0 - 1.0 / n**2) / lam**2
    density = density * sensor_for(medium).effective_area_m2(lam)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(lam))])
    return Spectrum(lam, cumulative / cumulative[-1], float(cumulative[-1]))


def sample_wavelength_nm(medium: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``size`` wavelengths [nm] drawn from the medium's detected Cherenkov spectrum."""
    spectrum = detected_spectrum(medium)
    return np.interp(rng.random(size), spectrum.cdf, spectrum.wavelength_nm)


@cache
def band_wavelengths_nm(medium: str) -> np.ndarray:
    """Return the grid wavelengths [nm] where the medium's detected spectrum is non-zero."""
    spectrum = detected_spectrum(medium)
    density = np.diff(spectrum.cdf)
    keep = np.concatenate([density > 0, [False]]) | np.concatenate([[False], density > 0])
    return spectrum.wavelength_nm[keep]


@cache
def direct_time_factors(medium: str) -> tuple[float, float]:
    """Return (cascade, track) factors K of the earliest unscattered arrival time over the band.

    A point source's light reaches distance r at r·K_cascade/c at the earliest (K_cascade =
    min n_group); a β = 1 track's light reaches perpendicular distance ρ at the time the
    track passes its closest approach plus ρ·K_track/c, K_track = min (n_g - cos θc)/sin θc.
    Table delays count from these times, so no light has a negative delay.
    """
    lam = band_wavelengths_nm(medium)
    ng = n_group(medium, lam)
    cos_c = 1.0 / n_phase(medium, lam)
    track = (ng - cos_c) / np.sqrt(1.0 - cos_c**2)
    return float(ng.min()), float(track.min())


def cascade_track_length_m_per_gev(medium: str) -> float:
    """Return the Cherenkov-equivalent track length [m] of a point EM cascade per GeV (density-scaled from ice)."""
    return CASCADE_TRACK_LENGTH_M_PER_GEV_ICE * RADEL_ICE_DENSITY_G_CM3 / DENSITY_G_CM3[check_medium(medium)]


def cascade_photons_per_gev(medium: str) -> float:
    """Return the area-weighted detected photons [m²] a point EM cascade emits per GeV."""
    return cascade_track_length_m_per_gev(medium) * detected_spectrum(medium).yield_m2_per_m


def cascade_angular_density(cos_theta, n) -> np.ndarray:
    """Return Rädel & Wiebusch's unnormalised cascade photon density per solid angle vs cos θ."""
    a, b, c, d = CASCADE_ANGULAR_PARAMETERS
    return a * np.exp(b * np.abs(np.asarray(cos_theta) - 1.0 / np.asarray(n)) ** c) + d


@cache
def _cascade_offset_cdf() -> tuple[np.ndarray, np.ndarray]:
    """Return (offset grid Δ = cos θ - 1/n, antiderivative G(Δ)) of the cascade angular profile."""
    offset = np.linspace(-2.0, 1.0, 300001)
    a, b, c, d = CASCADE_ANGULAR_PARAMETERS
    density = a * np.exp(b * np.abs(offset) ** c) + d
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(offset))])
    return offset, integral


def sample_cascade_cos(n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return cos θ to the cascade axis drawn from Rädel & Wiebusch's profile at indices ``n``."""
    offset, integral = _cascade_offset_cdf()
    centre = 1.0 / np.asarray(n)
    low = np.interp(-1.0 - centre, offset, integral)
    high = np.interp(1.0 - centre, offset, integral)
    target = low + rng.random(len(centre)) * (high - low)
    return np.clip(np.interp(target, integral, offset) + centre, -1.0, 1.0)


@dataclass
class Photons:
    """A batch of photons: position [m], unit direction, time [ns], path [m], wavelength [nm], weight [m²]."""

    position_m: np.ndarray
    direction: np.ndarray
    time_ns: np.ndarray
    path_m: np.ndarray
    wavelength_nm: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)

    def take(self, keep: np.ndarray) -> Photons:
        """Return the photons selected by ``keep`` (mask or indices)."""
        return Photons(self.position_m[keep], self.direction[keep], self.time_ns[keep], self.path_m[keep],
                       self.wavelength_nm[keep], self.weight[keep])


def _directions_around_z(cos_theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    phi = rng.uniform(0.0, 2.0 * np.pi, len(cos_theta))
    sin_theta = np.sqrt(np.maximum(1.0 - cos_theta**2, 0.0))
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def emit_cascade(medium: str, size: int, rng: np.random.Generator) -> Photons:
    """Return ``size`` photons of a point EM cascade at the origin along +z, weights summing to 1 GeV's light."""
    lam = sample_wavelength_nm(medium, size, rng)
    direction = _directions_around_z(sample_cascade_cos(n_phase(medium, lam), rng), rng)
    weight = np.full(size, cascade_photons_per_gev(medium) / size)
    return Photons(np.zeros((size, 3)), direction, np.zeros(size), np.zeros(size), lam, weight)


def emit_track(medium: str, size: int, rng: np.random.Generator, length_m: float = 1.0) -> Photons:
    """Return ``size`` photons of a bare β = 1 muon along +z, emitted uniformly on z ∈ [0, length_m).

    The muon passes z = 0 at t = 0; weights sum to the light of ``length_m`` metres of track.
    """
    lam = sample_wavelength_nm(medium, size, rng)
    direction = _directions_around_z(1.0 / n_phase(medium, lam), rng)
    z = rng.uniform(0.0, length_m, size) if length_m > 0 else np.zeros(size)
    position = np.zeros((size, 3))
    position[:, 2] = z
    weight = np.full(size, detected_spectrum(medium).yield_m2_per_m * length_m / size)
    return Photons(position, direction, z / SPEED_OF_LIGHT_M_PER_NS, np.zeros(size), lam, weight)


def emit(source: str, medium: str, size: int, rng: np.random.Generator) -> Photons:
    """Return ``size`` photons of ``source`` ("cascade": per GeV; "track": per metre of track)."""
    if source == "cascade":
        return emit_cascade(medium, size, rng)
    if source == "track":
        return emit_track(medium, size, rng)
    raise ValueError(f"unknown source '{source}' (known: {', '.join(SOURCES)})")


@dataclass(frozen=True)
class Segments:
    """Straight photon paths between scatters: start, direction, length [m], start time [ns] and path [m].

    ``speed_m_per_ns`` is the group velocity and ``inv_absorption_per_m`` the absorption
    coefficient at each photon's wavelength; ``weight`` the emission weight (before absorption).
    ``photon`` indexes the photon within its batch.
    """

    start_m: np.ndarray
    direction: np.ndarray
    length_m: np.ndarray
    time_ns: np.ndarray
    path_m: np.ndarray
    speed_m_per_ns: np.ndarray
    inv_absorption_per_m: np.ndarray
    weight: np.ndarray
    photon: np.ndarray

    def weight_at(self, index: np.ndarray, distance_m: np.ndarray) -> np.ndarray:
        """Return the absorbed weight of segment ``index`` after ``distance_m`` along it."""
        path = self.path_m[index] + distance_m
        return self.weight[index] * np.exp(-path * self.inv_absorption_per_m[index])

    def time_at(self, index: np.ndarray, distance_m: np.ndarray) -> np.ndarray:
        """Return the time [ns] of segment ``index`` after ``distance_m`` along it."""
        return self.time_ns[index] + distance_m / self.speed_m_per_ns[index]


def rotate(direction: np.ndarray, cos_theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Return unit vectors at polar angle arccos(cos_theta), azimuth ``phi`` around each ``direction``."""
    ux, uy, uz = direction.T
    sin_theta = np.sqrt(np.maximum(1.0 - cos_theta**2, 0.0))
    cos_phi, sin_phi = np.cos(phi), np.sin(phi)
    perp = np.sqrt(np.maximum(1.0 - uz * uz, 0.0))
    near_pole = perp < 1e-6
    safe = np.where(near_pole, 1.0, perp)
    new = np.empty_like(direction)
    new[:, 0] = sin_theta * (ux * uz * cos_phi - uy * sin_phi) / safe + ux * cos_theta
    new[:, 1] = sin_theta * (uy * uz * cos_phi + ux * sin_phi) / safe + uy * cos_theta
    new[:, 2] = -sin_theta * cos_phi * perp + uz * cos_theta
    if near_pole.any():
        sign = np.where(uz[near_pole] >= 0, 1.0, -1.0)
        new[near_pole, 0] = sin_theta[near_pole] * cos_phi[near_pole]
        new[near_pole, 1] = sin_theta[near_pole] * sin_phi[near_pole]
        new[near_pole, 2] = sign * cos_theta[near_pole]
    return new / np.sqrt(np.einsum("ij,ij->i", new, new))[:, None]


def propagate(photons: Photons, medium: str, rng: np.random.Generator,
              max_path_m: float | np.ndarray) -> Iterator[Segments]:
    """Yield the segments of ``photons`` between scatters until each has travelled ``max_path_m``.

    ``max_path_m`` is a number or one value per photon. Free paths are exponential with the
    scattering length at each photon's wavelength; scattering angles follow the medium's
    phase function, azimuths are uniform.
    """
    check_medium(medium)
    position = photons.position_m.copy()
    direction = photons.direction.copy()
    time = photons.time_ns.copy()
    path = photons.path_m.copy()
    lam = photons.wavelength_nm
    limit = np.broadcast_to(np.asarray(max_path_m, dtype=float), lam.shape).copy()
    scattering = scattering_length_m(medium, lam)
    speed = SPEED_OF_LIGHT_M_PER_NS / n_group(medium, lam)
    with np.errstate(divide="ignore"):
        inv_absorption = 1.0 / absorption_length_m(medium, lam)
    weight = photons.weight.copy()
    index = np.arange(len(lam))
    while len(index):
        step = np.minimum(rng.exponential(scattering), limit - path)
        yield Segments(position, direction, step, time, path, speed, inv_absorption, weight, index)
        position = position + step[:, None] * direction
        time = time + step / speed
        path = path + step
        alive = path < limit
        if not alive.all():
            position, direction, time, path = position[alive], direction[alive], time[alive], path[alive]
            scattering, speed, inv_absorption = scattering[alive], speed[alive], inv_absorption[alive]
            weight, limit, index = weight[alive], limit[alive], index[alive]
        if not len(index):
            break
        cos_theta = sample_scattering_cos(medium, len(index), rng)
        direction = rotate(direction, cos_theta, rng.uniform(0.0, 2.0 * np.pi, len(index)))


@dataclass(frozen=True)
class Crossings:
    """Where segments cross shells: segment index, distance along it [m], shell index, position [m]."""

    segment: np.ndarray
    distance_m: np.ndarray
    shell: np.ndarray
    position_m: np.ndarray


def _expand(first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (owner, item) listing items first..first+count-1 of each owner."""
    owner = np.repeat(np.arange(len(count)), count)
    start = np.repeat(np.cumsum(count) - count, count)
    return owner, np.repeat(first, count) + np.arange(len(owner)) - start


def _count_at_most(radii: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return how many ``radii`` (sorted; log-spaced ones take a shortcut) are ≤ each value."""
    ratio = radii[1:] / radii[:-1] if len(radii) > 1 else np.ones(0)
    if len(radii) > 2 and np.allclose(ratio, ratio[0], rtol=1e-9, atol=0.0):
        with np.errstate(divide="ignore"):
            step = np.log(np.maximum(values, 1e-300) / radii[0]) / np.log(ratio[0])
        count = np.clip(np.floor(step + 1e-9).astype(np.int64) + 1, 0, len(radii))
        return count
    return np.searchsorted(radii, values, side="right")


def _shell_crossings(radii: np.ndarray, closest_sq: np.ndarray, s_star: np.ndarray, length: np.ndarray,
                     r_start: np.ndarray, r_end: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return (segment, distance, shell) of crossings of the radius ρ(s) = sqrt(closest² + ((s - s*)·scale)²)."""
    out = []
    # inward part: s from 0 to min(s*, length), the radius falls from r_start to r_turn;
    # outward part: from max(s*, 0) to length, it grows from r_turn to r_end
    turn = np.clip(s_star, 0.0, length)
    r_turn = np.sqrt(closest_sq + ((turn - s_star) * scale) ** 2)
    first = _count_at_most(radii, r_turn)
    for high, sign, has in ((r_start, -1.0, s_star > 0), (r_end, 1.0, s_star < length)):
        count = np.where(has, np.maximum(_count_at_most(radii, high) - first, 0), 0)
        segment, shell = _expand(first, count)
        radius = radii[shell]
        offset = np.sqrt(np.maximum(radius**2 - closest_sq[segment], 0.0)) / scale[segment]
        distance = s_star[segment] + sign * offset
        ok = (distance >= 0.0) & (distance < length[segment])
        out.append((segment[ok], distance[ok], shell[ok]))
    return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))


def sphere_crossings(segments: Segments, radii_m: np.ndarray) -> Crossings:
    """Return the crossings of the segments with spheres of ``radii_m`` (sorted) around the origin."""
    x, u, length = segments.start_m, segments.direction, segments.length_m
    b = np.einsum("ij,ij->i", x, u)
    r0_sq = np.einsum("ij,ij->i", x, x)
    closest_sq = np.maximum(r0_sq - b * b, 0.0)
    end = x + length[:, None] * u
    r_end = np.sqrt(np.einsum("ij,ij->i", end, end))
    segment, distance, shell = _shell_crossings(radii_m, closest_sq, -b, length, np.sqrt(r0_sq), r_end,
                                                np.ones_like(b))
    position = x[segment] + distance[:, None] * u[segment]
    return Crossings(segment, distance, shell, position)


def cylinder_crossings(segments: Segments, radii_m: np.ndarray) -> Crossings:
    """Return the crossings of the segments with cylinders of ``radii_m`` (sorted) around the z axis."""
    x, u, length = segments.start_m, segments.direction, segments.length_m
    q = u[:, 0] ** 2 + u[:, 1] ** 2
    moving = q > 1e-12
    scale = np.sqrt(np.where(moving, q, 1.0))
    b = (x[:, 0] * u[:, 0] + x[:, 1] * u[:, 1])
    rho0_sq = x[:, 0] ** 2 + x[:, 1] ** 2
    s_star = np.where(moving, -b / np.where(moving, q, 1.0), 0.0)
    closest_sq = np.maximum(rho0_sq - np.where(moving, b * b / np.where(moving, q, 1.0), 0.0), 0.0)
    end = x + length[:, None] * u
    rho_end = np.sqrt(end[:, 0] ** 2 + end[:, 1] ** 2)
    rho0 = np.sqrt(rho0_sq)
    rho_end = np.where(moving, rho_end, rho0)  # no crossings for photons along the axis
    segment, distance, shell = _shell_crossings(radii_m, closest_sq, s_star, length, rho0, rho_end, scale)
    position = x[segment] + distance[:, None] * u[segment]
    return Crossings(segment, distance, shell, position)


@dataclass(frozen=True)
class SensorHits:
    """Photons crossing the surfaces of sensor spheres (in or out).

    Sensor index, crossing position [m], direction, time [ns], weight [m²] and the photon's
    index within its batch; a photon may cross a sphere several times.
    """

    sensor: np.ndarray
    position_m: np.ndarray
    direction: np.ndarray
    time_ns: np.ndarray
    weight: np.ndarray
    photon: np.ndarray


def sphere_sensor_hits(segments: Segments, centres_m: np.ndarray, radius_m: float) -> SensorHits:
    """Return the crossings of the segments with the surfaces of spheres of ``radius_m`` at ``centres_m`` (k, 3).

    Entries and exits both count: a transparent sphere of cross-section π R² is crossed, in
    expectation, 2 π R² Φ times by a fluence Φ (Σ weight / (2 π R²) estimates Φ). Counting
    entries alone would also count the net current of the light absorbed inside the sphere,
    a bias of (2/3) R / λ_abs. Segments are first screened by their distance range from the origin.
    """
    x, u, length = segments.start_m, segments.direction, segments.length_m
    centre_r = np.linalg.norm(centres_m, axis=1)
    b = np.einsum("ij,ij->i", x, u)
    r0_sq = np.einsum("ij,ij->i", x, x)
    end = x + length[:, None] * u
    r_far = np.maximum(np.sqrt(r0_sq), np.linalg.norm(end, axis=1))
    turn = np.clip(-b, 0.0, length)
    r_near = np.sqrt(np.maximum(r0_sq + 2 * b * turn + turn * turn, 0.0))
    candidate = np.flatnonzero((r_near <= centre_r.max() + radius_m) & (r_far >= centre_r.min() - radius_m))
    seg = np.repeat(candidate, len(centres_m))
    sensor = np.tile(np.arange(len(centres_m)), len(candidate))
    d = x[seg] - centres_m[sensor]
    bd = np.einsum("ij,ij->i", d, u[seg])
    disc = bd * bd - (np.einsum("ij,ij->i", d, d) - radius_m**2)
    root = np.sqrt(np.maximum(disc, 0.0))
    crossing = np.concatenate([-bd - root, -bd + root])
    seg, sensor = np.tile(seg, 2), np.tile(sensor, 2)
    hit = (np.tile(disc, 2) > 0) & (crossing >= 0) & (crossing < length[seg])
    seg, sensor, crossing = seg[hit], sensor[hit], crossing[hit]
    position = x[seg] + crossing[:, None] * u[seg]
    return SensorHits(sensor, position, u[seg], segments.time_at(seg, crossing), segments.weight_at(seg, crossing),
                      segments.photon[seg])
