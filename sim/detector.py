"""From neutrino interactions to triggered detector events (hits), vectorised over a batch.

Steps: light sources (muon track, cascade at the vertex) → Poisson photo-electrons with
the expected charge of nurec.physics.light (sampled by sim.photons, which only visits
strings and modules the light can reach) → arrival times (direct Cherenkov time + Pandel
scattering delay + PMT jitter) → noise in the readout window → pulses (photo-electrons on
one sensor closer than the merge window) → trigger → events in the nurec schema, built
once per chunk from ragged numpy columns (nurec.ragged.RaggedEvents).
"""

from __future__ import annotations

import numpy as np

from nurec.geometry import Geometry
from nurec.io.schema import direction_to_angles
from nurec.physics import interaction as xs
from nurec.physics.medium import Medium
from nurec.physics.muon import muon_range_m
from nurec.physics.response import DetectorResponse
from nurec.physics.timing import sample_pandel_delay_ns
from nurec.ragged import RaggedEvents
from sim.generator import Primaries, makes_muon_track, orthonormal_basis
from sim.noise import sample_noise_hits
from sim.photons import PhotoElectrons, sample_photoelectrons
from sim.sorting import order_by_group_then_time
from sim.trigger import apply_trigger


class LightSources:
    """Per-event light sources of a batch: a muon track (optional) and a vertex cascade."""

    def __init__(self, primaries: Primaries, medium: Medium, rng: np.random.Generator):
        n = len(primaries)
        energy, y = primaries.energy_gev, primaries.inelasticity
        flavor = np.abs(primaries.pdg)
        is_cc = primaries.interaction == "CC"
        # Draw every random number for every event so the stream does not depend on masks.
        tau_muonic = rng.random(n) < xs.TAU_TO_MUON_BRANCHING
        tau_muon_fraction = rng.beta(1.0, 2.0, n)  # mean 1/3 of the tau energy
        tau_visible_fraction = rng.uniform(0.4, 0.9, n)  # rest carried off by neutrinos
        kinematic_angle = xs.sample_kinematic_angle_rad(energy, rng)
        kinematic_phi = rng.uniform(0.0, 2 * np.pi, n)

        lepton_energy = (1.0 - y) * energy
        hadronic_energy = y * energy
        em_energy = np.zeros(n)
        em_energy = np.where(is_cc & (flavor == 12), lepton_energy, em_energy)
        is_tau_cc = is_cc & (flavor == 16)
        em_energy = np.where(is_tau_cc & ~tau_muonic, lepton_energy * tau_visible_fraction, em_energy)
        self.is_track = makes_muon_track(primaries.pdg, primaries.interaction) & ~(is_tau_cc & ~tau_muonic)
        self.muon_energy_gev = np.where(
            self.is_track, np.where(is_tau_cc, lepton_energy * tau_muon_fraction, lepton_energy), 0.0
        )
        self.cascade_em_energy_gev = em_energy + xs.hadronic_light_factor(hadronic_energy) * hadronic_energy
        self.track_length_m = np.where(self.is_track, muon_range_m(self.muon_energy_gev, medium), 0.0)

        e1, e2 = orthonormal_basis(primaries.direction)
        sin_k = np.sin(kinematic_angle)[:, None]
        self.muon_direction = (
            np.cos(kinematic_angle)[:, None] * primaries.direction
            + sin_k * (np.cos(kinematic_phi)[:, None] * e1 + np.sin(kinematic_phi)[:, None] * e2)
        )
        self.vertex = primaries.vertex
        self.direction = primaries.direction
        self.visible_energy_gev = self.cascade_em_energy_gev + self.muon_energy_gev


def simulate_hit_columns(
    primaries: Primaries,
    geometry: Geometry,
    medium: Medium,
    response: DetectorResponse,
    rng: np.random.Generator,
    noise: bool = True,
) -> tuple[RaggedEvents, np.ndarray]:
    """Return (triggered events as ragged columns: hits, ``truth.*`` and ``weight`` per event;
    indices of the primaries they came from)."""
    n = len(primaries)
    sources = LightSources(primaries, medium, rng)
    pe = sample_photoelectrons(sources, geometry, medium, response, rng)
    pe_time = photoelectron_times_ns(pe, medium, response, rng)
    pe_charge = pe.scale * np.maximum(rng.normal(1.0, response.spe_charge_sigma, len(pe.event)), 0.05)
    lit, start, end = readout_windows(n, pe.event, pe_time, response)
    if noise:
        noise_event, noise_sensor, noise_time = sample_noise_hits(start, end, geometry.n_sensors, response.noise_rate_hz, rng)
        noise_charge = np.maximum(rng.normal(1.0, response.spe_charge_sigma, len(noise_event)), 0.05)
    else:
        noise_event = noise_sensor = np.zeros(0, dtype=np.int64)
        noise_time = noise_charge = np.zeros(0)
    pulses = merge_pulses(
        np.concatenate([pe.event, noise_event]), np.concatenate([pe.sensor, noise_sensor]),
        np.concatenate([pe_time, noise_time]), np.concatenate([pe_charge, noise_charge]),
        np.concatenate([np.zeros(len(pe.event), bool), np.ones(len(noise_event), bool)]),
        response.pulse_merge_window_ns)
    triggered = lit & apply_trigger(n, pulses[0], pulses[1], pulses[2], geometry, response)
    keep = triggered[pulses[0]]
    p_event, p_sensor, p_time, p_charge, p_noise = (a[keep] for a in pulses)
    order = order_by_group_then_time(p_event, p_time)
    p_event, p_sensor, p_time, p_charge, p_noise = (a[order] for a in (p_event, p_sensor, p_time, p_charge, p_noise))
    kept_events = np.flatnonzero(triggered)
    counts = np.bincount(p_event, minlength=n)[kept_events]
    hits = hit_columns(geometry, p_sensor, p_time - start[p_event], p_charge, p_noise)
    event_columns = {f"truth.{name}": values for name, values in
                     truth_columns(primaries, sources, kept_events, start).items()}
    event_columns["weight"] = primaries.weight[kept_events]
    return RaggedEvents.from_counts(counts, hits, event_columns), kept_events


def readout_windows(n_events: int, pe_event: np.ndarray, pe_time: np.ndarray,
                    response: DetectorResponse) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (lit, start [ns], end [ns]) per event: the readout window around its light.

    Photo-electrons come sorted by event; events without light have an empty window.
    """
    group_start = (np.flatnonzero(np.concatenate([[True], pe_event[1:] != pe_event[:-1]])) if len(pe_event)
                   else np.zeros(0, int))
    lit_events = pe_event[group_start]
    lit = np.zeros(n_events, dtype=bool)
    lit[lit_events] = True
    start = np.zeros(n_events)
    end = np.zeros(n_events)
    if len(pe_event):
        start[lit_events] = np.minimum.reduceat(pe_time, group_start) - response.readout_before_ns
        end[lit_events] = np.maximum.reduceat(pe_time, group_start) + response.readout_after_ns
    return lit, start, end


def hit_columns(geometry: Geometry, sensor: np.ndarray, t_rel_ns: np.ndarray, charge: np.ndarray,
                is_noise: np.ndarray) -> dict[str, np.ndarray]:
    """Return the hit columns of the event schema for pulses on sensor rows ``sensor``."""
    position = geometry.position[sensor]
    direction = geometry.direction[sensor]
    return {
        "sensor_id": geometry.sensor_id[sensor].astype(np.int32),
        "x": position[:, 0].astype(np.float32),
        "y": position[:, 1].astype(np.float32),
        "z": position[:, 2].astype(np.float32),
        "t": t_rel_ns.astype(np.float32),
        "charge": charge.astype(np.float32),
        "dir_x": direction[:, 0].astype(np.float32),
        "dir_y": direction[:, 1].astype(np.float32),
        "dir_z": direction[:, 2].astype(np.float32),
        "is_noise": is_noise,
    }


def truth_columns(primaries: Primaries, sources: LightSources, kept: np.ndarray,
                  start_ns: np.ndarray) -> dict[str, np.ndarray]:
    """Return the truth fields of the kept events (t0: the interaction time relative to the readout start)."""
    zenith, azimuth = direction_to_angles(*primaries.direction[kept].T)
    return {
        "pdg": primaries.pdg[kept].astype(np.int32),
        "interaction": primaries.interaction[kept].astype(str),
        "energy": primaries.energy_gev[kept],
        "dir_x": primaries.direction[kept, 0],
        "dir_y": primaries.direction[kept, 1],
        "dir_z": primaries.direction[kept, 2],
        "zenith": zenith,
        "azimuth": azimuth,
        "vertex_x": primaries.vertex[kept, 0],
        "vertex_y": primaries.vertex[kept, 1],
        "vertex_z": primaries.vertex[kept, 2],
        "t0": -start_ns[kept],
        "inelasticity": primaries.inelasticity[kept],
        "track_length": sources.track_length_m[kept],
        "is_track": sources.is_track[kept],
        "visible_energy": sources.visible_energy_gev[kept],
    }


def photoelectron_times_ns(pe: PhotoElectrons, medium: Medium, response: DetectorResponse,
                           rng: np.random.Generator) -> np.ndarray:
    """Return photo-electron arrival times [ns]: direct time + Pandel scattering delay + PMT jitter."""
    delay = sample_pandel_delay_ns(pe.distance_m, medium, rng)
    return pe.direct_time_ns + delay + rng.normal(0.0, response.jitter_ns, len(pe.event))


def merge_pulses(
    event: np.ndarray, sensor: np.ndarray, time_ns: np.ndarray, charge: np.ndarray,
    is_noise: np.ndarray, window_ns: float,
) -> tuple[np.ndarray, ...]:
    """Return pulses sorted by (event, sensor, time): photo-electrons on one sensor separated by ≤ window_ns are summed.

    A pulse takes the time and noise flag of its first photo-electron and the sum of
    the charges.
    """
    key = event.astype(np.int64) * (int(sensor.max(initial=0)) + 1) + sensor
    order = order_by_group_then_time(key, time_ns)
    k, e, s, t, q, z = key[order], event[order], sensor[order], time_ns[order], charge[order], is_noise[order]
    new = np.ones(len(e), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (np.diff(t) > window_ns)
    pulse_index = np.cumsum(new) - 1
    pulse_charge = np.bincount(pulse_index, weights=q, minlength=new.sum()) if len(e) else np.zeros(0)
    return e[new], s[new], t[new], pulse_charge, z[new]
