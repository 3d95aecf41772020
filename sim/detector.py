"""From neutrino interactions to triggered detector events (hits), vectorised over a batch.

Steps: light sources (muon track, cascade at the vertex) → expected photo-electrons per
sensor (sim.physics.light) → Poisson photo-electrons → arrival times (direct Cherenkov
time + Pandel scattering delay + PMT jitter) → noise → pulses (photo-electrons on one
sensor closer than the merge window) → trigger → events in the nurec schema.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from nurec.geometry import Geometry
from nurec.io.schema import direction_to_angles
from sim.config import DetectorResponse
from sim.generator import Primaries, makes_muon_track, orthonormal_basis
from sim.noise import sample_noise_hits
from sim.physics import interaction as xs
from sim.physics.light import (
    PHOTONS_PER_GEV,
    arrival_cos_alpha,
    expected_npe_cascade,
    expected_npe_track,
)
from sim.physics.medium import Medium
from sim.physics.muon import muon_energy_at_m, muon_energy_loss_gev_per_m, muon_range_m
from sim.physics.timing import cascade_direct_delay_ns, sample_pandel_delay_ns, track_geometry
from sim.trigger import apply_trigger

# Sensors expecting fewer photo-electrons than this (upper bound, acceptance 1) are
# skipped; summed over a whole detector the light lost this way is well below 1 pe.
CANDIDATE_NPE = 1e-4
# Light from an event cannot reach sensors further than this many attenuation lengths.
REACH_ATTENUATION_LENGTHS = 12.0
_MODULE_BLOCK_EVENTS = 128


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


def _reaches_detector(sources: LightSources, geometry: Geometry, medium: Medium) -> np.ndarray:
    """Return True for events whose light can reach the instrumented volume."""
    centre = geometry.center
    sensor_radius = np.max(np.linalg.norm(geometry.module_position - centre, axis=1))
    reach = sensor_radius + REACH_ATTENUATION_LENGTHS * medium.attenuation_length_m
    rel = centre - sources.vertex
    s = np.clip(np.sum(rel * sources.muon_direction, axis=1), 0.0, sources.track_length_m)
    closest = np.linalg.norm(rel - s[:, None] * sources.muon_direction, axis=1)
    return np.minimum(closest, np.linalg.norm(rel, axis=1)) < reach


def _candidate_pairs(
    sources: LightSources, events: np.ndarray, geometry: Geometry, medium: Medium,
    response: DetectorResponse,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (event, module) index pairs whose upper-bound expected charge is worth sampling."""
    module_pos = geometry.module_position.astype(np.float32)
    bound_area = response.pmt_area_m2 * geometry.pmts_per_module
    pair_events, pair_modules = [], []
    for start in range(0, len(events), _MODULE_BLOCK_EVENTS):
        block = events[start : start + _MODULE_BLOCK_EVENTS]
        vertex = sources.vertex[block, None, :].astype(np.float32)
        npe, _ = expected_npe_cascade(
            module_pos[None], -np.asarray(sources.direction[block, None, :], dtype=np.float32),
            vertex, sources.direction[block, None, :].astype(np.float32),
            sources.cascade_em_energy_gev[block, None].astype(np.float32), medium, bound_area, 0.0,
        )
        tracks = sources.is_track[block]
        if tracks.any():
            geo = track_geometry(module_pos[None], vertex[tracks], sources.muon_direction[block][tracks, None, :].astype(np.float32), medium)
            emission = geo["emission_m"]
            inside = (emission >= 0) & (emission <= sources.track_length_m[block][tracks, None])
            energy = muon_energy_at_m(sources.muon_energy_gev[block][tracks, None], np.maximum(emission, 0), medium)
            # Stochastic losses can exceed the mean several-fold: bound with 5x the b·E term.
            loss = medium.muon_loss_a_gev_per_m + 5.0 * medium.muon_loss_b_per_m * energy
            track_npe = expected_npe_track(geo["perpendicular_m"], geo["distance_m"], PHOTONS_PER_GEV * loss,
                                           np.ones_like(emission), medium, bound_area, 0.0)
            npe[tracks] += np.where(inside, track_npe, 0.0)
        rows, modules = np.nonzero(npe > CANDIDATE_NPE)
        pair_events.append(block[rows])
        pair_modules.append(modules)
    return np.concatenate(pair_events), np.concatenate(pair_modules)


def _module_sensor_rows(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (sensor rows sorted by module, start offset per module, count per module)."""
    index = geometry.sensor_module_index
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=geometry.n_modules)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def simulate_hits(
    primaries: Primaries,
    geometry: Geometry,
    medium: Medium,
    response: DetectorResponse,
    rng: np.random.Generator,
    noise: bool = True,
) -> tuple[ak.Array, np.ndarray]:
    """Return (triggered events without ids, indices of the primaries they came from)."""
    n = len(primaries)
    sources = LightSources(primaries, medium, rng)
    candidates = np.flatnonzero(_reaches_detector(sources, geometry, medium))
    pair_event, pair_module = _candidate_pairs(sources, candidates, geometry, medium, response)

    # Expand (event, module) pairs to (event, sensor) pairs.
    sensor_order, starts, counts = _module_sensor_rows(geometry)
    per_pair = counts[pair_module]
    offsets = np.repeat(starts[pair_module] - np.cumsum(per_pair) + per_pair, per_pair) + np.arange(per_pair.sum())
    sensor = sensor_order[offsets]
    event = np.repeat(pair_event, per_pair)
    pos, pmt_dir = geometry.position[sensor], geometry.direction[sensor]
    n_pairs = len(sensor)
    stochastic = rng.gamma(1.0, 1.0, n_pairs)  # fluctuation of the stochastic (b·E) muon losses

    # Cascade light at the vertex.
    casc_npe, casc_distance = expected_npe_cascade(
        pos, pmt_dir, sources.vertex[event], sources.direction[event],
        sources.cascade_em_energy_gev[event], medium, response.pmt_area_m2, response.acceptance_exponent,
    )
    casc_time = cascade_direct_delay_ns(casc_distance, medium)

    # Track light on the Cherenkov cone.
    geo = track_geometry(pos, sources.vertex[event], sources.muon_direction[event], medium)
    emission = geo["emission_m"]
    on_track = sources.is_track[event] & (emission >= 0) & (emission <= sources.track_length_m[event])
    muon_energy = muon_energy_at_m(sources.muon_energy_gev[event], np.maximum(emission, 0.0), medium)
    loss = medium.muon_loss_a_gev_per_m + stochastic * (muon_energy_loss_gev_per_m(muon_energy, medium) - medium.muon_loss_a_gev_per_m)
    cos_alpha = arrival_cos_alpha(geo["photon_dir"], pmt_dir, geo["distance_m"], medium)
    track_npe = np.where(
        on_track,
        expected_npe_track(geo["perpendicular_m"], geo["distance_m"], PHOTONS_PER_GEV * loss, cos_alpha,
                           medium, response.pmt_area_m2, response.acceptance_exponent),
        0.0,
    )

    # Photo-electrons; very bright sensors get max_pe_per_sensor photons carrying the charge.
    n_track = rng.poisson(track_npe)
    n_casc = rng.poisson(casc_npe)
    cap = response.max_pe_per_sensor
    kept_track, kept_casc = np.minimum(n_track, cap), np.minimum(n_casc, cap)
    pe_pair = np.concatenate([np.repeat(np.arange(n_pairs), kept_track), np.repeat(np.arange(n_pairs), kept_casc)])
    pe_distance = np.concatenate([np.repeat(geo["distance_m"], kept_track), np.repeat(casc_distance, kept_casc)])
    pe_direct = np.concatenate([np.repeat(geo["delay_ns"], kept_track), np.repeat(casc_time, kept_casc)])
    with np.errstate(invalid="ignore", divide="ignore"):
        scale_track = np.where(kept_track > 0, n_track / np.maximum(kept_track, 1), 0.0)
        scale_casc = np.where(kept_casc > 0, n_casc / np.maximum(kept_casc, 1), 0.0)
    pe_scale = np.concatenate([np.repeat(scale_track, kept_track), np.repeat(scale_casc, kept_casc)])
    pe_time = pe_direct + sample_pandel_delay_ns(pe_distance, medium, rng) + rng.normal(0.0, response.jitter_ns, len(pe_pair))
    pe_charge = pe_scale * np.maximum(rng.normal(1.0, response.spe_charge_sigma, len(pe_pair)), 0.05)
    pe_event = event[pe_pair]
    pe_sensor = sensor[pe_pair]

    # Readout window around the light of each event.
    lit = np.zeros(n, dtype=bool)
    lit[pe_event] = True
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, pe_event, pe_time)
    np.maximum.at(last, pe_event, pe_time)
    start = np.where(lit, first - response.readout_before_ns, 0.0)
    end = np.where(lit, last + response.readout_after_ns, 0.0)
    if noise:
        noise_event, noise_sensor, noise_time = sample_noise_hits(start, end, geometry.n_sensors, response.noise_rate_hz, rng)
        noise_charge = np.maximum(rng.normal(1.0, response.spe_charge_sigma, len(noise_event)), 0.05)
    else:
        noise_event = noise_sensor = np.zeros(0, dtype=np.int64)
        noise_time = noise_charge = np.zeros(0)

    all_event = np.concatenate([pe_event, noise_event])
    all_sensor = np.concatenate([pe_sensor, noise_sensor])
    all_time = np.concatenate([pe_time, noise_time])
    all_charge = np.concatenate([pe_charge, noise_charge])
    all_noise = np.concatenate([np.zeros(len(pe_event), bool), np.ones(len(noise_event), bool)])

    pulses = merge_pulses(all_event, all_sensor, all_time, all_charge, all_noise, response.pulse_merge_window_ns)
    p_event, p_sensor, p_time, p_charge, p_noise = pulses
    triggered = lit & apply_trigger(n, p_event, p_sensor, p_time, geometry, response)
    keep = triggered[p_event]
    p_event, p_sensor, p_time, p_charge, p_noise = (a[keep] for a in pulses)

    order = np.lexsort((p_time, p_event))
    p_event, p_sensor, p_time, p_charge, p_noise = (a[order] for a in (p_event, p_sensor, p_time, p_charge, p_noise))
    kept_events = np.flatnonzero(triggered)
    counts = np.bincount(p_event, minlength=n)[kept_events]
    t_rel = p_time - start[p_event]
    hit_pos = geometry.position[p_sensor]
    hit_dir = geometry.direction[p_sensor]
    hits = ak.zip(
        {
            "sensor_id": geometry.sensor_id[p_sensor].astype(np.int32),
            "x": hit_pos[:, 0].astype(np.float32),
            "y": hit_pos[:, 1].astype(np.float32),
            "z": hit_pos[:, 2].astype(np.float32),
            "t": t_rel.astype(np.float32),
            "charge": p_charge.astype(np.float32),
            "dir_x": hit_dir[:, 0].astype(np.float32),
            "dir_y": hit_dir[:, 1].astype(np.float32),
            "dir_z": hit_dir[:, 2].astype(np.float32),
            "is_noise": p_noise,
        },
        depth_limit=1,
    )
    k = kept_events
    zenith, azimuth = direction_to_angles(*primaries.direction[k].T)
    truth = ak.zip(
        {
            "pdg": primaries.pdg[k].astype(np.int32),
            "interaction": primaries.interaction[k].astype(str).tolist(),
            "energy": primaries.energy_gev[k],
            "dir_x": primaries.direction[k, 0],
            "dir_y": primaries.direction[k, 1],
            "dir_z": primaries.direction[k, 2],
            "zenith": zenith,
            "azimuth": azimuth,
            "vertex_x": primaries.vertex[k, 0],
            "vertex_y": primaries.vertex[k, 1],
            "vertex_z": primaries.vertex[k, 2],
            "t0": -start[k],
            "inelasticity": primaries.inelasticity[k],
            "track_length": sources.track_length_m[k],
            "is_track": sources.is_track[k],
            "visible_energy": sources.visible_energy_gev[k],
        },
        depth_limit=1,
    )
    events = ak.zip(
        {"hits": ak.unflatten(hits, counts), "truth": truth, "weight": primaries.weight[k]},
        depth_limit=1,
    )
    return events, kept_events


def merge_pulses(
    event: np.ndarray, sensor: np.ndarray, time_ns: np.ndarray, charge: np.ndarray,
    is_noise: np.ndarray, window_ns: float,
) -> tuple[np.ndarray, ...]:
    """Return pulses: photo-electrons on one sensor separated by ≤ window_ns are summed.

    A pulse takes the time and noise flag of its first photo-electron and the sum of
    the charges.
    """
    order = np.lexsort((time_ns, sensor, event))
    e, s, t, q, z = event[order], sensor[order], time_ns[order], charge[order], is_noise[order]
    new = np.ones(len(e), dtype=bool)
    new[1:] = (e[1:] != e[:-1]) | (s[1:] != s[:-1]) | (np.diff(t) > window_ns)
    pulse_index = np.cumsum(new) - 1
    pulse_charge = np.bincount(pulse_index, weights=q, minlength=new.sum()) if len(e) else np.zeros(0)
    return e[new], s[new], t[new], pulse_charge, z[new]
