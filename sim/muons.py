"""The muon's journey in the simulator: stochastic losses as cascades, multiple scattering, its range.

For each event with a muon (LightSources.is_track):

- Losses: the muon is propagated with nurec.physics.muon_losses from the vertex until it stops
  or leaves the region from which light can reach the detector (``light_reach_m`` beyond its
  bounding sphere); losses above DISCRETE_LOSS_V_CUT of its energy become cascades at their
  place along the track (bremsstrahlung and pair production electromagnetic, photonuclear
  hadronic with the fluctuating hadronic light factor); δ electrons are left to the track's
  light factor (nurec.physics.light.track_light_factor counts the light of all secondary
  electrons). Losses below the cut stay in the track's continuous light. The muon's range is
  where it stopped (or the segment's end).
- Multiple scattering: the muon is stepped (``MS_STEPS`` steps, Highland's width per step at the
  step's mean energy, PDG) from the vertex to the point of its path closest to the detector's
  centre; the light of the track is that of the straight line through the scattered position
  with the scattered direction, so what the detector sees deviates from the muon's initial
  direction (stored in truth) in angle and position as the muon did. One straight line stands
  for the track in the detector (scattering inside it is not followed).

``expand`` turns a batch's LightSources into rows the photo-electron sampler takes as they
are: each event's vertex cascade (parent rows), one track row per muon, one cascade row per
discrete loss, each with its time offset after the interaction and its parent event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nurec.geometry import Geometry
from nurec.physics import interaction as xs
from nurec.physics.light import DISCRETE_LOSS_V_CUT
from nurec.physics.medium import SPEED_OF_LIGHT_M_PER_NS, Medium
from nurec.physics.muon import muon_energy_at_m
from nurec.physics.muon_losses import (
    LOSS_TYPES,
    MUON_MASS_GEV,
    deflect,
    sample_deflection,
    sample_stochastic_losses,
)
from sim.photons import module_columns

MS_STEPS = 8
_PHOTONUCLEAR = LOSS_TYPES.index("photonuclear")
_IONISATION = LOSS_TYPES.index("ionisation")


@dataclass
class SourceRows:
    """Light sources as the photo-electron sampler takes them, each row belonging to an event.

    The attributes of sim.detector.LightSources, per row, plus ``parent`` (the event) and
    ``time_offset_ns`` (when the row's light starts, after the interaction).
    """

    vertex: np.ndarray
    direction: np.ndarray
    muon_direction: np.ndarray
    is_track: np.ndarray
    track_length_m: np.ndarray
    muon_energy_gev: np.ndarray
    cascade_em_energy_gev: np.ndarray
    parent: np.ndarray
    time_offset_ns: np.ndarray


@dataclass
class MuonTransport:
    """What happened to each event's muon (NaN or 0 without one)."""

    range_m: np.ndarray  # where the muon stopped, or the followed segment's length [m]
    light_anchor: np.ndarray  # start of the straight line standing for the track in the detector
    light_direction: np.ndarray
    loss_event: np.ndarray  # discrete losses that make light: event, position, direction, EM-equivalent energy
    loss_position: np.ndarray
    loss_distance_m: np.ndarray  # along the muon's path from the vertex
    loss_em_energy_gev: np.ndarray


def _segment_length_m(vertex: np.ndarray, direction: np.ndarray, geometry: Geometry, reach_m: float) -> np.ndarray:
    """Return how far along the track the muon stays able to light the detector (0 if it never can)."""
    radius = module_columns(geometry).radius_m + reach_m  # cached per geometry, not recomputed per batch
    rel = vertex - geometry.center
    along = -np.einsum("ij,ij->i", rel, direction)
    closest = np.einsum("ij,ij->i", rel, rel) - along**2
    half = np.sqrt(np.maximum(radius**2 - closest, 0.0))
    return np.where(closest <= radius**2, np.maximum(along + half, 0.0), 0.0)


def _scatter(vertex: np.ndarray, direction: np.ndarray, energy_gev: np.ndarray, distance_m: np.ndarray,
             medium: Medium, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (position, direction) of muons stepped over ``distance_m`` with Highland deflections."""
    step = distance_m / MS_STEPS
    position, current = vertex.copy(), direction.copy()
    for k in range(MS_STEPS):
        energy = np.maximum(muon_energy_at_m(energy_gev, (k + 0.5) * step, medium), MUON_MASS_GEV * 1.001)
        theta_x, theta_y = sample_deflection(energy, np.maximum(step, 1e-9), medium.name, rng)
        # Half the step along the old direction, half along the new one (the deflection mid-step).
        position = position + 0.5 * step[:, None] * current
        current = deflect(current, theta_x, theta_y)
        position = position + 0.5 * step[:, None] * current
    return position, current


def transport_muons(sources, geometry: Geometry, medium: Medium, reach_m: float,
                    rng: np.random.Generator) -> MuonTransport:
    """Propagate each event's muon: stochastic losses, range and multiple scattering (module docstring)."""
    n = len(sources.vertex)
    muons = np.flatnonzero(sources.is_track & (sources.muon_energy_gev > MUON_MASS_GEV))
    energy = sources.muon_energy_gev[muons]
    vertex, direction = sources.vertex[muons], sources.muon_direction[muons]
    segment = _segment_length_m(vertex, direction, geometry, reach_m)
    losses = sample_stochastic_losses(energy, segment, medium.name, DISCRETE_LOSS_V_CUT, rng, e_cut_gev=None)
    range_m = np.zeros(n)
    range_m[muons] = losses.distance_m
    # Scatter up to the point of the path closest to the detector's centre.
    rel = geometry.center - vertex
    to_closest = np.clip(np.einsum("ij,ij->i", rel, direction), 0.0, range_m[muons])
    position, scattered = _scatter(vertex, direction, energy, to_closest, medium, rng)
    anchor = np.full((n, 3), np.nan)
    light_direction = np.full((n, 3), np.nan)
    anchor[muons] = position - to_closest[:, None] * scattered
    light_direction[muons] = scattered
    muon_of_loss = muons[losses.muon_index]
    keep = losses.loss_type != _IONISATION
    hadronic = losses.loss_type == _PHOTONUCLEAR
    light_factor = np.where(hadronic, xs.sample_hadronic_light_factor(losses.energy_gev, rng), 1.0)
    distance = losses.position_m[keep]
    event = muon_of_loss[keep]
    position = anchor[event] + distance[:, None] * light_direction[event]
    return MuonTransport(range_m, anchor, light_direction, event, position, distance,
                         (losses.energy_gev * light_factor)[keep])


def expand(sources, transport: MuonTransport) -> SourceRows:
    """Return the batch's light as sampler rows: vertex cascades, muon tracks, loss cascades."""
    n = len(sources.vertex)
    muons = np.flatnonzero(np.isfinite(transport.light_anchor[:, 0]))
    n_loss = len(transport.loss_event)
    vertex = np.concatenate([sources.vertex, transport.light_anchor[muons], transport.loss_position])
    # A row's axis: the cascade's (vertex rows), the scattered muon's (track and loss rows).
    direction = np.concatenate([sources.direction, transport.light_direction[muons],
                                transport.light_direction[transport.loss_event]])
    is_track = np.concatenate([np.zeros(n, bool), np.ones(len(muons), bool), np.zeros(n_loss, bool)])
    track_length = np.concatenate([np.zeros(n), transport.range_m[muons], np.zeros(n_loss)])
    muon_energy = np.concatenate([np.zeros(n), sources.muon_energy_gev[muons], np.zeros(n_loss)])
    cascade = np.concatenate([sources.cascade_em_energy_gev, np.zeros(len(muons)), transport.loss_em_energy_gev])
    parent = np.concatenate([np.arange(n), muons, transport.loss_event])
    offset = np.concatenate([np.zeros(n + len(muons)), transport.loss_distance_m / SPEED_OF_LIGHT_M_PER_NS])
    return SourceRows(vertex, direction, direction, is_track, track_length, muon_energy, cascade, parent, offset)
