"""From neutrino interactions to triggered detector events (hits), vectorised over a batch.

Steps: light sources (muon track, cascade at the vertex) → Poisson photo-electrons with
the expected charge of nurec.physics.light (sampled by sim.photons, which only visits
strings and modules the light can reach) → arrival times (direct Cherenkov time + Pandel
scattering delay + PMT jitter) → noise in the readout window → pulses (photo-electrons on
one sensor closer than the merge window) → trigger → events in the nurec schema, built
once per chunk from ragged numpy columns (nurec.ragged.RaggedEvents).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import special
from scipy.spatial.distance import pdist

from nurec.geometry import Geometry
from nurec.io.schema import direction_to_angles
from nurec.physics import interaction as xs
from nurec.physics.light import light_reach_m
from nurec.physics.medium import SPEED_OF_LIGHT_M_PER_NS, Medium
from nurec.physics.muon import muon_range_m
from nurec.physics.response import DetectorResponse
from nurec.physics.tables import direct_time_ns, load_table, sample_delay_ns, sensor_geometry
from nurec.physics.timing import pandel_shape_rate, sample_pandel_delay_ns
from nurec.physics.tot import charge_from_tot_pe, tot_from_charge_ns
from nurec.ragged import RaggedEvents
from sim.capped import PROBABILITY_GRID, capped_arrival_delays_ns, capped_groups
from sim.generator import Primaries, makes_muon_track, orthonormal_basis
from sim.muons import MuonTransport, expand, transport_muons
from sim.noise import sample_background, sensor_conditions
from sim.photons import PhotoElectrons, sample_photoelectrons
from sim.sorting import order_by_group_then_time
from sim.trigger import apply_trigger, hard_local_coincidence


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
        lepton_mass = np.select([is_cc & (flavor == 14), is_cc & (flavor == 16)],
                                [xs.MUON_MASS_GEV, xs.TAU_MASS_GEV], 0.0)
        self.bjorken_x, cos_lepton = xs.sample_lepton_cos_theta(energy, y, lepton_mass, rng)
        kinematic_angle = np.arccos(np.clip(cos_lepton, -1.0, 1.0))
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
        self.cascade_em_energy_gev = em_energy + xs.sample_hadronic_light_factor(hadronic_energy, rng) * hadronic_energy
        self.track_length_m = np.where(self.is_track, muon_range_m(self.muon_energy_gev, medium), 0.0)

        e1, e2 = orthonormal_basis(primaries.direction)
        sin_k = np.sin(kinematic_angle)[:, None]
        lepton_direction = (
            np.cos(kinematic_angle)[:, None] * primaries.direction
            + sin_k * (np.cos(kinematic_phi)[:, None] * e1 + np.sin(kinematic_phi)[:, None] * e2)
        )
        self.muon_direction = lepton_direction
        # The vertex cascade moves with the hadrons (p_ν - p_lepton) when the lepton leaves no
        # shower of its own (NC, νμ CC, τ → μ); for νe CC (and τ decaying to hadrons or an
        # electron) the lepton's shower joins it and together they carry the neutrino's momentum.
        lepton_momentum = np.sqrt(np.maximum(lepton_energy**2 - lepton_mass**2, 0.0))
        hadron_momentum = energy[:, None] * primaries.direction - lepton_momentum[:, None] * lepton_direction
        norm = np.linalg.norm(hadron_momentum, axis=1, keepdims=True)
        hadron_direction = np.where(norm > 0, hadron_momentum / np.where(norm > 0, norm, 1.0), primaries.direction)
        hadrons_only = ~is_cc | (flavor == 14) | (is_tau_cc & tau_muonic)
        self.vertex = primaries.vertex
        self.direction = np.where(hadrons_only[:, None], hadron_direction, primaries.direction)
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
    transport = transport_muons(sources, geometry, medium, light_reach_m(medium), rng)
    rows = expand(sources, transport)
    pe = sample_photoelectrons(rows, geometry, medium, response, rng)
    pe_time = photoelectron_times_ns(pe, rows, geometry, medium, response, rng) + rows.time_offset_ns[pe.event]
    pe, order = pe.to_events(rows.parent)
    pe_time = pe_time[order]
    pe_charge = response.sample_charge(pe.scale, rng)
    if response.readout_window == "trigger":
        lit, start, end, trigger_span = trigger_windows(n, pe, pe_time, geometry, medium, response)
    else:
        lit, start, end = readout_windows(n, pe.event, pe_time, response)
        trigger_span = None
    if noise:
        noise_event, noise_sensor, noise_time, noise_charge = sample_background(start, end, geometry, response, rng)
    else:
        noise_event = noise_sensor = np.zeros(0, dtype=np.int64)
        noise_time = noise_charge = np.zeros(0)
    pulses = merge_pulses(
        np.concatenate([pe.event, noise_event]), np.concatenate([pe.sensor, noise_sensor]),
        np.concatenate([pe_time, noise_time]), np.concatenate([pe_charge, noise_charge]),
        np.concatenate([np.zeros(len(pe.event), bool), np.ones(len(noise_event), bool)]),
        response.pulse_merge_window_ns)
    pulses = digitize(pulses, start, end, geometry, response)
    seen = np.ones(len(pulses[0]), dtype=bool)
    if trigger_span is not None:  # the trigger searches the time its light forms coincidences, not the snapshot
        seen = (pulses[2] >= trigger_span[0][pulses[0]]) & (pulses[2] <= trigger_span[1][pulses[0]])
    decision, seen_trig = apply_trigger(n, pulses[0][seen], pulses[1][seen], pulses[2][seen], geometry, response,
                                        medium)
    triggered = lit & decision
    trig = np.zeros(len(pulses[0]), dtype=bool)
    if seen_trig is not None:
        trig[np.flatnonzero(seen)] = seen_trig
    keep = triggered[pulses[0]]
    p_event, p_sensor, p_time, p_charge, p_noise, p_tot, p_trig = (a[keep] for a in (*pulses, trig))
    order = order_by_group_then_time(p_event, p_time)
    p_event, p_sensor, p_time, p_charge, p_noise, p_tot, p_trig = (
        a[order] for a in (p_event, p_sensor, p_time, p_charge, p_noise, p_tot, p_trig))
    kept_events = np.flatnonzero(triggered)
    counts = np.bincount(p_event, minlength=n)[kept_events]
    hlc = hard_local_coincidence(p_event, p_sensor, p_time, geometry, response) if response.trigger == "smt" else None
    hits = hit_columns(geometry, p_sensor, p_time - start[p_event], p_charge, p_noise,
                       p_tot if response.tot_model() is not None else None,
                       p_trig if seen_trig is not None else None, hlc)
    event_columns = {f"truth.{name}": values for name, values in
                     truth_columns(primaries, sources, transport, geometry, kept_events, start).items()}
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


def trigger_windows(n_events: int, pe: PhotoElectrons, pe_time: np.ndarray, geometry: Geometry, medium: Medium,
                    response: DetectorResponse) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Return (lit, start [ns], end [ns], (trigger from, trigger to) [ns]) per event.

    The readout window is the span of the light's local coincidences (photo-electrons on two
    sensors of one module within ``coincidence_window_ns``) widened on both sides by the
    detector's light-crossing time; events whose light forms none are not lit. The trigger looks only
    at that span (± ``trigger_slack_ns``): an event whose light forms no coincidence cannot
    trigger, and the background elsewhere in a long snapshot cannot trigger it either.
    """
    module = geometry.sensor_module_index[pe.sensor]
    key = pe.event.astype(np.int64) * geometry.n_modules + module
    order = order_by_group_then_time(key, pe_time)
    k, t, s, e = key[order], pe_time[order], pe.sensor[order], pe.event[order]
    pair = (k[1:] == k[:-1]) & (s[1:] != s[:-1]) & (np.diff(t) <= response.coincidence_window_ns)
    in_pair = np.zeros(len(k), dtype=bool)
    in_pair[1:] |= pair
    in_pair[:-1] |= pair
    l1_first = np.full(n_events, np.inf)
    l1_last = np.full(n_events, -np.inf)
    np.minimum.at(l1_first, e[in_pair], t[in_pair])
    np.maximum.at(l1_last, e[in_pair], t[in_pair])
    # Light that forms no local coincidence cannot trigger: no snapshot, no background to draw.
    lit = np.isfinite(l1_first)
    crossing = light_crossing_time_ns(geometry, medium)
    before = crossing if response.snapshot_before_ns is None else response.snapshot_before_ns
    after = crossing if response.snapshot_after_ns is None else response.snapshot_after_ns
    slack = response.trigger_slack_ns
    trigger_span = (np.where(lit, l1_first - slack, np.inf), np.where(lit, l1_last + slack, -np.inf))
    return lit, np.where(lit, l1_first - before, 0.0), np.where(lit, l1_last + after, 0.0), trigger_span


def _largest_module_distance_m(geometry: Geometry) -> float:
    if "largest_module_distance_m" not in geometry._cache:  # once per geometry object
        geometry._cache["largest_module_distance_m"] = (
            float(pdist(geometry.module_position).max(initial=0.0)) if geometry.n_modules > 1 else 0.0)
    return geometry._cache["largest_module_distance_m"]


def light_crossing_time_ns(geometry: Geometry, medium: Medium) -> float:
    """Return the time [ns] light needs to cross the detector (its largest module-to-module distance)."""
    return _largest_module_distance_m(geometry) / medium.light_speed_m_per_ns


def digitize(pulses: tuple[np.ndarray, ...], start: np.ndarray, end: np.ndarray, geometry: Geometry,
             response: DetectorResponse) -> tuple[np.ndarray, ...]:
    """Return the pulses the readout records, with their ToT [ns] (0 without a ToT readout) appended.

    Pulses on dead sensors or outside the event's window are lost; with a ToT readout, pulses
    below threshold are lost and the charge becomes the ToT's estimate (nurec.physics.tot).
    """
    event, sensor, time, charge, is_noise = pulses
    model = response.tot_model()
    if model is None and response.readout_window == "light" and response.dead_sensor_fraction == 0:
        return event, sensor, time, charge, is_noise, np.zeros(len(event))
    _, alive = sensor_conditions(geometry, response)
    keep = alive[sensor] & (time >= start[event]) & (time <= end[event])
    tot = np.zeros(len(event))
    if model is not None:
        tot = tot_from_charge_ns(charge, model)
        keep &= tot > 0
        charge = charge_from_tot_pe(tot, model)
    return tuple(a[keep] for a in (event, sensor, time, charge, is_noise, tot))


def hit_columns(geometry: Geometry, sensor: np.ndarray, t_rel_ns: np.ndarray, charge: np.ndarray,
                is_noise: np.ndarray, tot_ns: np.ndarray | None = None,
                trig: np.ndarray | None = None, hlc: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return the hit columns of the event schema for pulses on sensor rows ``sensor`` (``tot_ns`` for a ToT
    readout, ``trig`` for a trigger that marks the hits it fired on, ``hlc`` for IceCube's local coincidence)."""
    position = geometry.position[sensor]
    direction = geometry.direction[sensor]
    columns = {
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
    if tot_ns is not None:
        columns["tot_ns"] = tot_ns.astype(np.float32)
    if trig is not None:
        columns["trig"] = trig.astype(bool)
    if hlc is not None:
        columns["hlc"] = hlc.astype(bool)
    return columns


def truth_columns(primaries: Primaries, sources: LightSources, transport: MuonTransport, geometry: Geometry,
                  kept: np.ndarray, start_ns: np.ndarray) -> dict[str, np.ndarray]:
    """Return the truth fields of the kept events (t0: the interaction time relative to the readout start).

    ``track_length`` is the muon's mean range; ``muon_length_in_detector`` the length of its
    simulated path (stochastic range, scattered line) inside the instrumented volume.
    """
    zenith, azimuth = direction_to_angles(*primaries.direction[kept].T)
    has_muon = np.isfinite(transport.light_anchor[kept, 0])
    inside = np.zeros(len(kept))
    if has_muon.any():
        muon = kept[has_muon]
        inside[has_muon] = geometry.path_length_inside(transport.light_anchor[muon], transport.light_direction[muon],
                                                       transport.range_m[muon])
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
        "bjorken_x": sources.bjorken_x[kept],
        "muon_energy": sources.muon_energy_gev[kept],
        "muon_dir_x": np.where(sources.is_track[kept], sources.muon_direction[kept, 0], np.nan),
        "muon_dir_y": np.where(sources.is_track[kept], sources.muon_direction[kept, 1], np.nan),
        "muon_dir_z": np.where(sources.is_track[kept], sources.muon_direction[kept, 2], np.nan),
        "muon_length_in_detector": inside,
        "cascade_dir_x": sources.direction[kept, 0],
        "cascade_dir_y": sources.direction[kept, 1],
        "cascade_dir_z": sources.direction[kept, 2],
    }


def photoelectron_times_ns(pe: PhotoElectrons, sources: LightSources, geometry: Geometry, medium: Medium,
                           response: DetectorResponse, rng: np.random.Generator) -> np.ndarray:
    """Return photo-electron arrival times [ns] after the interaction: the arrival of direct light plus the
    scattering delay (Pandel pdf, or the photon tables' delay distributions) plus PMT jitter.

    Photo-electrons that stand for more (``pe.represents``, a capped sensor) take delay and
    jitter together from sim.capped, which keeps the sensor's first arrival exact.
    """
    if response.arrival_delays == "tables":
        arrival, capped_arrival = table_arrival_times_ns(pe, sources, geometry, medium, rng, response.jitter_ns)
    else:
        arrival = pe.direct_time_ns + sample_pandel_delay_ns(pe.distance_m, medium, rng)
        capped_arrival = pe.direct_time_ns + _pandel_capped_delays_ns(pe, medium, response.jitter_ns, rng)
    arrival = arrival + rng.normal(0.0, response.jitter_ns, len(pe.event))
    capped = np.isfinite(capped_arrival)
    arrival[capped] = capped_arrival[capped]
    return arrival


def _pandel_capped_delays_ns(pe: PhotoElectrons, medium: Medium, jitter_ns: float,
                             rng: np.random.Generator) -> np.ndarray:
    """Return delay + jitter of capped groups' photo-electrons from the Pandel pdf (NaN elsewhere)."""
    delay = np.full(len(pe.event), np.nan)
    capped = np.flatnonzero(pe.represents > 0)
    if len(capped):
        first, index = capped_groups(pe.group[capped])
        shape, rate = pandel_shape_rate(pe.distance_m[capped[first]], medium)
        quantiles = special.gammaincinv(shape[:, None], PROBABILITY_GRID[None, :]) / rate
        delay[capped] = capped_arrival_delays_ns(index, pe.leads[capped], pe.represents[capped], quantiles,
                                                 jitter_ns, rng)
    return delay


_TABLE_BLOCK = 50_000  # photo-electrons per table lookup (bounds memory)


def table_arrival_times_ns(pe: PhotoElectrons, sources: LightSources, geometry: Geometry, medium: Medium,
                           rng: np.random.Generator, jitter_ns: float) -> tuple[np.ndarray, np.ndarray]:
    """Return arrival times [ns] from the photon tables (nurec.physics.tables) of the medium, without
    jitter, and the arrival times with jitter of capped groups' photo-electrons (sim.capped; NaN elsewhere).

    Cascade light: the table's direct time at distance r from the vertex plus a delay drawn for
    the sensor's distance, angle to the cascade axis and orientation. Muon light: the muon passes
    the sensor's point of closest approach at along/c, then the track table's direct time at ρ
    and a delay drawn likewise. Each (event, sensor) builds its delay distribution once for all
    its photo-electrons. Distances beyond the tables' range take the nearest edge's delays.
    """
    arrival = np.empty(len(pe.event))
    capped_arrival = np.full(len(pe.event), np.nan)
    for is_track, source in ((False, "cascade"), (True, "track")):
        chosen = np.flatnonzero(pe.from_track == is_track)
        if len(chosen) == 0:
            continue
        table = load_table(medium.name, source)
        pairs, pe_pair = np.unique(np.column_stack([pe.event[chosen], pe.sensor[chosen]]), axis=0,
                                   return_inverse=True)
        pe_pair = pe_pair.ravel()
        event, sensor = pairs[:, 0], pairs[:, 1]
        axis = sources.muon_direction[event] if is_track else sources.direction[event]
        shape = sensor_geometry(table, geometry.position[sensor], geometry.direction[sensor],
                                sources.vertex[event], axis)
        distance = shape.distance_m
        shape = replace(shape, distance_m=np.clip(distance, table.distance_m[0], table.distance_m[-1]))
        order = np.argsort(pe_pair, kind="stable")
        delay = np.empty(len(chosen))
        capped_delay = np.full(len(chosen), np.nan)
        for block in range(0, len(pairs), _TABLE_BLOCK):
            members = slice(block, block + _TABLE_BLOCK)
            part = replace(shape, distance_m=shape.distance_m[members], cos_eta=shape.cos_eta[members],
                           pmt_local=shape.pmt_local[members])
            in_block = order[(pe_pair[order] >= block) & (pe_pair[order] < block + _TABLE_BLOCK)]
            delay[in_block] = sample_delay_ns(table, part, rng, rows=pe_pair[in_block] - block)
            capped = in_block[pe.represents[chosen[in_block]] > 0]
            if len(capped):
                take = chosen[capped]
                first, index = capped_groups(pe.group[take])
                rows = np.repeat(pe_pair[capped[first]] - block, len(PROBABILITY_GRID))
                levels = np.tile(PROBABILITY_GRID, len(first))
                quantiles = sample_delay_ns(table, part, rng, rows=rows, quantiles=levels)
                quantiles = np.nan_to_num(quantiles, nan=0.0).reshape(len(first), len(PROBABILITY_GRID))
                capped_delay[capped] = capped_arrival_delays_ns(index, pe.leads[take], pe.represents[take],
                                                                quantiles, jitter_ns, rng)
        delay = np.nan_to_num(delay, nan=0.0)  # a cell without light: its direct time
        start = 0.0
        if is_track:
            rel = geometry.position[sensor] - sources.vertex[event]
            start = (np.einsum("ij,ij->i", rel, axis) / SPEED_OF_LIGHT_M_PER_NS)[pe_pair]
        direct = start + direct_time_ns(table, distance)[pe_pair]
        arrival[chosen] = direct + delay
        capped_arrival[chosen] = direct + capped_delay
    return arrival, capped_arrival


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
