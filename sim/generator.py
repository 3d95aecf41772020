"""Neutrino generation: flavour, energy, direction, vertex, interaction and weights.

Vertices are drawn uniformly in a cylinder aligned with each neutrino's direction and
centred on the detector: radius R = (sensor sphere radius + margin), length 2R, extended
upstream by the muon range for events that make a muon, so through-going muons from
distant vertices appear. The cylinder's volume V(E) depends on energy only, which keeps
the weights exact for an isotropic flux.

Weight (OneWeight convention, GeV cm² sr):

    w = σ(E) · n_N · V(E) · Ω_gen · ∫_{Emin}^{Emax} E^-γ dE / (E^-γ · f_type)

with n_N the nucleon density, Ω_gen = 4π (isotropic) or 2π (up-going), and f_type the
share of generated events of this (pdg, interaction) type. The expected number of
events from a flux Φ(E) [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹] in a time T is Σ_i w_i Φ(E_i) T / N_gen,
with N_gen the number of GENERATED events (dataset metadata ``n_generated``), summing
over written (triggered) events. Absorption in the Earth is not included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nurec.geometry import Geometry
from nurec.physics import interaction as xs
from nurec.physics.medium import Medium
from nurec.physics.muon import muon_range_m
from sim.config import FLAVOR_PDG, SimulationConfig


@dataclass
class Primaries:
    """A batch of generated neutrino interactions (arrays of equal length)."""

    pdg: np.ndarray
    interaction: np.ndarray  # "CC" / "NC"
    energy_gev: np.ndarray
    direction: np.ndarray  # (n, 3), direction of travel
    vertex: np.ndarray  # (n, 3) [m]
    inelasticity: np.ndarray
    weight: np.ndarray  # OneWeight [GeV cm² sr]
    generation_volume_m3: np.ndarray

    def __len__(self) -> int:
        return len(self.pdg)


def type_table(config: SimulationConfig) -> list[tuple[int, str]]:
    """Return the generated (pdg, interaction) types, each with an equal share."""
    return [
        (sign * FLAVOR_PDG[flavor], interaction)
        for flavor in config.flavors
        for sign in (1, -1)
        for interaction in config.interactions
    ]


def makes_muon_track(pdg: np.ndarray, interaction: np.ndarray) -> np.ndarray:
    """Return True where the interaction can produce a long muon (νμ CC, ντ CC)."""
    flavor = np.abs(pdg)
    return (interaction == "CC") & ((flavor == 14) | (flavor == 16))


def sample_power_law(n: int, e_min: float, e_max: float, index: float, rng: np.random.Generator) -> np.ndarray:
    """Return energies [GeV] drawn from E^-index between e_min and e_max (inverse CDF)."""
    u = rng.random(n)
    if np.isclose(index, 1.0):
        return e_min * (e_max / e_min) ** u
    g = 1.0 - index
    return (e_min**g + u * (e_max**g - e_min**g)) ** (1.0 / g)


def power_law_integral(e_min: float, e_max: float, index: float) -> float:
    """Return ∫_{e_min}^{e_max} E^-index dE."""
    if np.isclose(index, 1.0):
        return float(np.log(e_max / e_min))
    g = 1.0 - index
    return float((e_max**g - e_min**g) / g)


def sample_directions(n: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Return unit directions of travel, isotropic or up-going only (travelling upward)."""
    cos_z = rng.uniform(-1.0, 1.0, n) if mode == "isotropic" else rng.uniform(0.0, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    sin_z = np.sqrt(1.0 - cos_z**2)
    return np.column_stack([sin_z * np.cos(phi), sin_z * np.sin(phi), cos_z])


def orthonormal_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return two unit vectors perpendicular to each direction and to each other."""
    helper = np.where(np.abs(direction[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(direction, e1)
    return e1, e2


def generation_radius_m(geometry: Geometry, medium: Medium, margin_m: float | None) -> float:
    """Return the radius of the generation cylinder: sensor sphere radius plus margin."""
    margin = 3.0 * medium.attenuation_length_m if margin_m is None else margin_m
    if "sensor_sphere_radius_m" not in geometry._cache:
        geometry._cache["sensor_sphere_radius_m"] = float(np.max(np.linalg.norm(geometry.position - geometry.center,
                                                                                axis=1)))
    return geometry._cache["sensor_sphere_radius_m"] + margin


def track_extension_m(energy_gev: np.ndarray, config: SimulationConfig, medium: Medium) -> np.ndarray:
    """Return how far upstream the generation cylinder reaches for muon-producing events."""
    return np.minimum(muon_range_m(energy_gev, medium), config.max_track_extension_m)


def generate_primaries(
    n: int, config: SimulationConfig, geometry: Geometry, medium: Medium, rng: np.random.Generator
) -> Primaries:
    """Return ``n`` generated neutrino interactions with their OneWeights."""
    types = type_table(config)
    choice = rng.integers(0, len(types), n)
    pdg = np.array([t[0] for t in types], dtype=np.int32)[choice]
    interaction = np.array([t[1] for t in types], dtype=object)[choice]
    energy = sample_power_law(n, config.energy_min_gev, config.energy_max_gev, config.spectral_index, rng)
    direction = sample_directions(n, config.directions, rng)
    y = xs.sample_inelasticity(pdg, rng)

    radius = generation_radius_m(geometry, medium, config.volume_margin_m)
    extension = np.where(makes_muon_track(pdg, interaction), track_extension_m(energy, config, medium), 0.0)
    # Uniform in a disk of radius R perpendicular to the direction...
    r = radius * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2 * np.pi, n)
    e1, e2 = orthonormal_basis(direction)
    # ...and uniform along the axis from -(R + extension) (upstream) to +R.
    along = rng.uniform(-radius - extension, radius)
    vertex = (
        geometry.center
        + (r * np.cos(phi))[:, None] * e1
        + (r * np.sin(phi))[:, None] * e2
        + along[:, None] * direction
    )
    volume_m3 = np.pi * radius**2 * (2 * radius + extension)

    solid_angle = 4 * np.pi if config.directions == "isotropic" else 2 * np.pi
    integral = power_law_integral(config.energy_min_gev, config.energy_max_gev, config.spectral_index)
    nucleons = xs.NUCLEON_DENSITY_PER_CM3[medium.name]
    sigma = xs.cross_section_cm2(energy, pdg, interaction)
    weight = sigma * nucleons * volume_m3 * 1e6 * solid_angle * integral / (
        energy ** (-config.spectral_index) / len(types)
    )
    return Primaries(pdg, interaction, energy, direction, vertex, y, weight, volume_m3)
