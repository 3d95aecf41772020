"""KM3NeT offline ROOT files and detx detector files, read from the real km3net-testdata files.

Every expectation is recomputed here from the raw file with plain uproot / a line-by-line
detx reading, independently of nurec.io.km3net / nurec.io.detx.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from nurec.geometry import get_geometry
from nurec.io.detx import DetxError, parse_detx
from nurec.io.km3net import KM3NET_SPE_TOT_NS, FileDetector, KM3NeTOptions, iter_km3net_chunks
from nurec.io.sources import SourceError, iter_events
from nurec.physics.tot import ToTModel, charge_from_tot_pe

km3net_testdata = pytest.importorskip("km3net_testdata")
uproot = pytest.importorskip("uproot")
data_path = km3net_testdata.data_path

V92 = "offline/KM3NeT_00000049_00011291.mc.gsg_neutrinos.km3sim_sirene_merged.jterbr.jppmuon_jppshower_static.offline.v9.2.sample.root"
NUMUCC = "offline/numucc.root"
NUMUCC_DETX = "detx/KM3NeT_-00000001_20171212.detx"
DATA_NO_MC = "offline/km3net_offline.root"
DATA_NO_MC_DETX = "detx/km3net_offline.detx"
EMPTY = "offline/empty_events.root"


def _read(path, **options):
    chunks = list(iter_km3net_chunks(data_path(path), KM3NeTOptions(**options)))
    events = ak.concatenate([e for e, _ in chunks]) if len(chunks) > 1 else chunks[0][0]
    return events, pd.concat([r for _, r in chunks], ignore_index=True)


def _raw(path, branches):
    return uproot.open(data_path(path))["E"].arrays(branches, library="ak")


def _detx_table_by_hand(path) -> dict[tuple[int, int], tuple[float, ...]]:
    """(dom_id, channel) -> (x, y, z, dx, dy, dz, t0) from a v2 detx file, read line by line."""
    lines = [ln.split() for ln in open(data_path(path)) if ln.strip() and not ln.startswith("#")]
    assert lines[0][1].lower() in ("v2", "v3")
    table, i = {}, 4
    while i < len(lines):
        dom_id, n_pmts = int(lines[i][0]), int(lines[i][3])
        for channel in range(n_pmts):
            words = lines[i + 1 + channel]
            table[dom_id, channel] = tuple(float(v) for v in words[1:8]) + (int(words[0]),)
        i += 1 + n_pmts
    return table


@pytest.fixture(scope="module")
def v92():
    return _read(V92, step_events=7)  # several chunks, to exercise streaming


@pytest.fixture(scope="module")
def numucc():
    return _read(NUMUCC, detx=data_path(NUMUCC_DETX))


def test_km3net_hits_match_the_file_read_independently(v92):
    events, _ = v92
    raw = _raw(V92, ["hits.t", "hits.tot", "hits.pos.x", "hits.pos.y", "hits.pos.z", "hits.dir.z", "hits.pmt_id", "hits.trig"])
    assert len(events) == 30
    assert ak.num(events.hits, axis=1).tolist() == ak.num(raw["hits.t"], axis=1).tolist()
    assert events.event_id.tolist() == list(range(30))
    for name, branch in (("x", "hits.pos.x"), ("y", "hits.pos.y"), ("z", "hits.pos.z"), ("dir_z", "hits.dir.z")):
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits[name])),
                                   ak.to_numpy(ak.flatten(raw[branch])), rtol=1e-6, atol=1e-4)
    expected_t = raw["hits.t"] - ak.min(raw["hits.t"], axis=1)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits.t)), ak.to_numpy(ak.flatten(expected_t)), atol=1e-3)
    np.testing.assert_allclose(ak.to_numpy(events.source.t_offset_ns), ak.to_numpy(ak.min(raw["hits.t"], axis=1)))
    raw_tot = ak.to_numpy(ak.flatten(raw["hits.tot"]))
    assert ak.flatten(events.hits.trig).tolist() == (ak.flatten(raw["hits.trig"]) != 0).tolist()
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(events.hits.tot_ns)), raw_tot)
    # The charge is the ToT model's estimate, on the simulator's scale: 1 pe at the nominal single-pe ToT.
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits.charge)),
                               charge_from_tot_pe(raw_tot, ToTModel(spe_tot_ns=KM3NET_SPE_TOT_NS)), rtol=1e-6)
    assert charge_from_tot_pe(np.array([KM3NET_SPE_TOT_NS]), ToTModel())[0] == pytest.approx(1.0)
    assert ak.flatten(events.hits.sensor_id).tolist() == ak.flatten(raw["hits.pmt_id"]).tolist()


def test_km3net_triggered_only_keeps_exactly_the_triggered_hits():
    events, _ = _read(V92, triggered_only=True)
    raw = _raw(V92, ["hits.trig"])
    assert ak.num(events.hits, axis=1).tolist() == ak.sum(raw["hits.trig"] != 0, axis=1).tolist()


def test_km3net_truth_is_the_first_mc_track_with_travel_direction(v92):
    events, _ = v92
    raw = _raw(V92, ["mc_trks.type", "mc_trks.E", "mc_trks.dir.x", "mc_trks.dir.y", "mc_trks.dir.z",
                     "mc_trks.pos.z", "w2list"])
    truth = events.truth
    assert truth.pdg.tolist() == raw["mc_trks.type"][:, 0].tolist()
    np.testing.assert_allclose(ak.to_numpy(truth.energy), ak.to_numpy(raw["mc_trks.E"][:, 0]))
    np.testing.assert_allclose(ak.to_numpy(truth.vertex_z), ak.to_numpy(raw["mc_trks.pos.z"][:, 0]))
    travel = np.column_stack([ak.to_numpy(raw[f"mc_trks.dir.{c}"][:, 0]) for c in "xyz"])
    travel /= np.linalg.norm(travel, axis=1, keepdims=True)
    got = np.column_stack([ak.to_numpy(truth[f"dir_{c}"]) for c in "xyz"])
    np.testing.assert_allclose(got, travel, atol=1e-12)
    # IceCube convention: zenith/azimuth point to where the neutrino comes from.
    np.testing.assert_allclose(np.cos(ak.to_numpy(truth.zenith)), -travel[:, 2], atol=1e-12)
    source_xy = -travel[:, :2]
    np.testing.assert_allclose(np.cos(ak.to_numpy(truth.azimuth)), source_xy[:, 0] / np.hypot(*source_xy.T), atol=1e-9)
    cc_flag = ak.to_numpy(raw["w2list"][:, 10])  # W2LIST_GSEAGEN_CC, GENIE code 2 = weak CC, 3 = weak NC
    expected = np.where(cc_flag == 2, "CC", np.where(cc_flag == 3, "NC", ""))
    assert truth.interaction.tolist() == expected.tolist()
    assert {"CC", "NC"} <= set(expected.tolist())  # the sample has both


def test_km3net_truth_vertex_time_precedes_the_first_triggered_hit(v92):
    events, _ = v92
    raw = _raw(V92, ["hits.trig"])
    first_triggered = ak.to_numpy(ak.min(events.hits.t[raw["hits.trig"] != 0], axis=1))
    delay = first_triggered - ak.to_numpy(events.truth.t0)
    # light reaches the first triggered PMT after the interaction, within the event window
    assert np.all(delay > 0) and np.all(delay < 10_000)


def test_km3net_positions_from_detx_match_a_line_by_line_detx_reading(numucc):
    events, _ = numucc
    raw = _raw(NUMUCC, ["hits.dom_id", "hits.channel_id", "hits.t", "mc_trks.usr_names", "mc_trks.usr"])
    table = _detx_table_by_hand(NUMUCC_DETX)
    assert len(events) == 10
    assert ak.num(events.hits, axis=1).tolist() == ak.num(raw["hits.dom_id"], axis=1).tolist()
    keys = zip(ak.flatten(raw["hits.dom_id"]).tolist(), ak.flatten(raw["hits.channel_id"]).tolist(), strict=True)
    expected = np.array([table[k] for k in keys])
    got = np.column_stack([ak.to_numpy(ak.flatten(events.hits[c])) for c in ("x", "y", "z", "dir_x", "dir_y", "dir_z")])
    np.testing.assert_allclose(got[:, :3], expected[:, :3], atol=1e-4)
    pmt_dir = expected[:, 3:6] / np.linalg.norm(expected[:, 3:6], axis=1, keepdims=True)
    np.testing.assert_allclose(got[:, 3:], pmt_dir, atol=1e-6)
    # the old-style CC flag: usr value "cc" of mc_tracks[0] (2 = weak CC); numucc is all CC
    first_names = raw["mc_trks.usr_names"][:, 0].tolist()
    first_values = raw["mc_trks.usr"][:, 0].tolist()
    cc = [v[n.index("cc")] for n, v in zip(first_names, first_values, strict=True)]
    assert cc == [2.0] * 10
    assert events.truth.interaction.tolist() == ["CC"] * 10
    assert events.truth.is_track.tolist() == [True] * 10


def test_km3net_uncalibrated_data_gets_detx_positions_and_time_offsets():
    events, reference = _read(DATA_NO_MC, detx=data_path(DATA_NO_MC_DETX))
    raw = _raw(DATA_NO_MC, ["hits.dom_id", "hits.channel_id", "hits.t"])
    table = _detx_table_by_hand(DATA_NO_MC_DETX)
    assert "truth" not in events.fields  # real data: no MC
    assert len(events) == 10 and len(reference) == 10
    keys = list(zip(ak.flatten(raw["hits.dom_id"]).tolist(), ak.flatten(raw["hits.channel_id"]).tolist(), strict=True))
    t0 = np.array([table[k][6] for k in keys])
    calibrated = ak.unflatten(ak.to_numpy(ak.flatten(raw["hits.t"])) + t0, ak.num(raw["hits.t"], axis=1))
    expected = ak.flatten(calibrated - ak.min(calibrated, axis=1))
    assert np.all(t0 > 2e5)  # real calibration offsets, so this is not a no-op
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.hits.t)), ak.to_numpy(expected), atol=1e-3)


def test_km3net_reference_is_best_jmuon_longest_chain_then_likelihood(v92):
    events, reference = v92
    raw = _raw(V92, ["trks.rec_type", "trks.rec_stages", "trks.lik", "trks.dir.z", "trks.E"])
    expected_dir_z, expected_lik = [], []
    for rec_type, stages, lik, dir_z in zip(raw["trks.rec_type"].tolist(), raw["trks.rec_stages"].tolist(),
                                            raw["trks.lik"].tolist(), raw["trks.dir.z"].tolist(), strict=True):
        jmuon = [i for i in range(len(lik))
                 if rec_type[i] == 4000 and stages[i] and all(0 <= s <= 99 for s in stages[i])]
        longest = max((len(stages[i]) for i in jmuon), default=0)
        best = max((i for i in jmuon if len(stages[i]) == longest), key=lambda i: lik[i], default=None)
        expected_dir_z.append(np.nan if best is None else dir_z[best])
        expected_lik.append(np.nan if best is None else lik[best])
    assert reference.method.unique().tolist() == ["km3net-jmuon"]
    assert reference.event_id.tolist() == events.event_id.tolist()
    np.testing.assert_allclose(reference.dir_z, expected_dir_z)
    np.testing.assert_allclose(reference.likelihood, expected_lik)
    assert (reference.fit_status == "ok").sum() == np.isfinite(expected_lik).sum() > 0
    # The JMUON direction is a direction of travel like the MC one: they agree for muon tracks.
    truth = np.column_stack([ak.to_numpy(events.truth[f"dir_{c}"]) for c in "xyz"])
    cos = np.sum(truth * reference[["dir_x", "dir_y", "dir_z"]].to_numpy(), axis=1)
    tracks = ak.to_numpy(events.truth.is_track) & np.isfinite(cos)
    assert np.median(np.degrees(np.arccos(cos[tracks]))) < 20.0


def test_km3net_empty_file_gives_an_empty_chunk_with_the_full_layout():
    chunks = list(iter_events(data_path(EMPTY), "km3net-offline"))
    assert len(chunks) == 1 and len(chunks[0]) == 0
    assert {"event_id", "run_id", "hits", "source"} <= set(chunks[0].fields)


def test_km3net_uncalibrated_file_without_detx_names_the_missing_detector_file():
    with pytest.raises(SourceError, match=r"numucc\.root: hits carry no positions.*--detx"):
        list(iter_events(data_path(NUMUCC), "km3net-offline"))


def test_km3net_hit_on_a_dom_absent_from_the_detx_fails_naming_dom_and_file():
    with pytest.raises(SourceError, match=r"numucc\.root: hit on DOM \d+ channel \d+ .* absent from detx file .*km3net_offline\.detx"):
        list(iter_events(data_path(NUMUCC), "km3net-offline", detx=data_path(DATA_NO_MC_DETX)))


def test_km3net_truncated_root_file_fails_with_a_one_line_error(tmp_path):
    source = data_path(V92)
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(open(source, "rb").read()[:300_000])
    with pytest.raises(SourceError) as info:
        list(iter_events(truncated, "km3net-offline"))
    assert "truncated.root: truncated ROOT file" in str(info.value) and "\n" not in str(info.value)


# --- the detector a file's hits show ------------------------------------------------------

def _pmt_hits(n_hits=6):
    """Hits on three PMTs of one DOM, each PMT hit twice at its one position and direction."""
    sensor_id = np.tile([101, 102, 103], n_hits // 3)
    dom_id = np.full(n_hits, 808969848)
    position = np.array([[1.0, 2.0, 3.0], [1.1, 2.0, 3.0], [1.0, 2.1, 3.0]])[sensor_id - 101]
    direction = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])[sensor_id - 101]
    return sensor_id, dom_id, position, direction


def test_file_detector_collects_each_pmt_once_across_chunks():
    seen = FileDetector("run.root")
    sensor_id, dom_id, position, direction = _pmt_hits()
    seen.add_det_ids(np.array([49, 49]))
    seen.add_hits(sensor_id[:4], dom_id[:4], position[:4], direction[:4])
    seen.add_hits(sensor_id[4:], dom_id[4:], position[4:] + 0.0004, direction[4:])  # within 1 mm
    geometry = seen.geometry()
    assert seen.det_id == 49 and geometry.name == "KM3NeT_00000049" and geometry.family == "km3net"
    assert geometry.sensor_id.tolist() == [101, 102, 103] and geometry.module_id.tolist() == [808969848] * 3
    np.testing.assert_allclose(geometry.position, position[:3])


def _second_chunk(change):
    """The second chunk of _pmt_hits with sensor 102's hit changed: moved 2 mm, turned, or on another DOM."""
    sensor_id, dom_id, position, direction = (a[3:].copy() for a in _pmt_hits())
    if change == "position":
        position[1, 2] += 0.002
    elif change == "direction":
        direction[1] = [0.99995, 0.01, 0.0]
    else:
        dom_id[1] = 7
    return sensor_id, dom_id, position, direction


@pytest.mark.parametrize("change, expected", [
    ("position", r"run\.root: hits disagree on the detector: sensor_id 102 has position \(1\.1000, 2\.0000, "
                 r"3\.0000\) m in one hit and \(1\.1000, 2\.0000, 3\.0020\) m in another"),
    ("direction", r"run\.root: .*sensor_id 102 has direction \(1\.0000, 0\.0000, 0\.0000\) in one hit "
                  r"and \(1\.0000, 0\.0100, 0\.0000\) in another"),
    ("module", r"run\.root: .*sensor_id 102 is on module 808969848 in one hit and 7 in another"),
])
def test_file_detector_refuses_a_pmt_seen_in_two_places_naming_it_and_the_file(change, expected):
    seen = FileDetector("data/run.root")
    seen.add_hits(*(a[:3] for a in _pmt_hits()))  # the first chunk is consistent
    with pytest.raises(SourceError, match=expected) as info:
        seen.add_hits(*_second_chunk(change))
    assert "\n" not in str(info.value)


def test_file_detector_refuses_a_pmt_that_disagrees_within_one_chunk():
    sensor_id, dom_id, position, direction = _pmt_hits()
    position[5] += [0.0, 0.0, 0.01]  # sensor 103's second hit, 1 cm off
    with pytest.raises(SourceError, match=r"run\.root: .*sensor_id 103 has position"):
        FileDetector("run.root").add_hits(sensor_id, dom_id, position, direction)


def test_file_detector_refuses_a_file_of_several_det_ids():
    seen = FileDetector("mixed.root")
    seen.add_det_ids(np.array([49, 49]))
    with pytest.raises(SourceError, match=r"mixed\.root: events of several detectors \(det_id 49 and 133\)"):
        seen.add_det_ids(np.array([133]))


def test_streaming_a_calibrated_file_collects_the_pmts_of_all_its_hits():
    seen = FileDetector(data_path(V92))
    for _ in iter_km3net_chunks(data_path(V92), KM3NeTOptions(step_events=7, triggered_only=True), seen):
        pass
    raw = _raw(V92, ["hits.pmt_id", "hits.pos.z"])
    pmt_id, z = ak.to_numpy(ak.flatten(raw["hits.pmt_id"])), ak.to_numpy(ak.flatten(raw["hits.pos.z"]))
    geometry = seen.geometry()
    assert seen.det_id == 49 and geometry.n_sensors == len(np.unique(pmt_id))  # untriggered hits count too
    np.testing.assert_allclose(geometry.position[geometry.sensor_lookup(pmt_id), 2], z)


# --- detx ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["detx_v1.detx", "detx_v2.detx", "detx_v3.detx", "detx_v3_whitespace.detx"])
def test_detx_small_versions_give_the_listed_pmts(name):
    detector = parse_detx(data_path(f"detx/{name}"))
    assert len(detector.pmt_id) == 18 and len(np.unique(detector.dom_id)) == 6
    np.testing.assert_allclose(detector.position[0], [1.1, 1.2, 1.3])
    np.testing.assert_allclose(detector.t0[0], 10.0)
    assert detector.channel_id[:3].tolist() == [0, 1, 2]
    assert detector.du.tolist()[::3] == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("name, version", [("detx_v4.detx", 4), ("detx_v5.detx", 5),
                                           ("detx_v5_invalid_multiline_comments.detx", 5)])
def test_detx_v4_v5_match_a_line_by_line_reading(name, version):
    lines = [ln.split() for ln in open(data_path(f"detx/{name}")) if ln.strip() and not ln.startswith("#")]
    i = next(i for i, w in enumerate(lines) if len(w) == 2 and w[1].upper() == f"V{version}")
    n_modules, i = int(lines[i + 3][0]), i + 4
    pmts = []  # (dom_id, du, channel, pmt_id, x, y, z, t0)
    for _ in range(n_modules):
        module = lines[i]
        for channel in range(int(module[-1])):
            words = lines[i + 1 + channel]
            pmts.append((int(module[0]), int(module[1]), channel, int(words[0]),
                         *(float(w) for w in words[1:4]), float(words[7])))
        i += 1 + int(module[-1])
    expected = np.array(pmts)
    detector = parse_detx(data_path(f"detx/{name}"))
    assert detector.version == version and len(detector.pmt_id) == len(pmts)
    got = np.column_stack([detector.dom_id, detector.du, detector.channel_id, detector.pmt_id,
                           detector.position, detector.t0])
    np.testing.assert_allclose(got, expected)


def test_detx_geometry_is_a_km3net_geometry_usable_by_name():
    geometry = get_geometry(data_path(NUMUCC_DETX))
    assert geometry.family == "km3net" and geometry.medium == "water"
    assert geometry.n_sensors == 64170 and geometry.n_modules == 2070 and geometry.pmts_per_module == 31
    assert geometry.floor.min() == 0


def test_simulator_runs_on_a_real_detx_layout():
    from sim.config import SimulationConfig
    from sim.simulate import simulate_events

    detx = data_path("detx/D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx")  # ORCA, 6 DUs, v3
    events, metadata = simulate_events(SimulationConfig(detector=detx, n_events=3, energy_min_gev=10,
                                                        energy_max_gev=100, seed=3))
    assert metadata["detector"]["family"] == "km3net" and metadata["detector"]["n_sensors"] == 108 * 31
    position_of_pmt = {v[7]: v[:3] for v in _detx_table_by_hand("detx/D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx").values()}
    hits = ak.flatten(events.hits)
    expected = np.array([position_of_pmt[i] for i in hits.sensor_id.tolist()])
    got = np.column_stack([ak.to_numpy(hits[c]) for c in "xyz"])
    assert len(got) > 0
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_detx_truncated_file_names_what_is_missing(tmp_path):
    broken = tmp_path / "broken.detx"
    text = open(data_path("detx/detx_v2.detx")).read().splitlines()
    broken.write_text("\n".join(text[:-2]) + "\n")
    with pytest.raises(DetxError, match=r"broken\.detx: file ends inside the PMT list of module 6"):
        parse_detx(broken)



def test_muon_truth_comes_from_the_first_muon_among_the_mc_tracks():
    events, _ = _read(V92)
    raw = _raw(V92, ["mc_trks.type", "mc_trks.E", "mc_trks.dir.z"])
    for i in range(len(events)):
        types = np.abs(ak.to_numpy(raw["mc_trks.type"][i]))
        truth = events.truth[i]
        if (types == 13).any():
            first = int(np.flatnonzero(types == 13)[0])
            assert truth.muon_energy == pytest.approx(float(raw["mc_trks.E"][i][first]))
            assert truth.muon_dir_z == pytest.approx(float(raw["mc_trks.dir.z"][i][first]))
            assert truth.muon_energy <= truth.energy
        else:
            assert np.isnan(truth.muon_energy)
    assert np.isfinite(ak.to_numpy(events.truth.muon_energy[events.truth.is_track])).all()
