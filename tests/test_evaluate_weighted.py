"""Flux-weighted metrics and effective areas in the quality report (nurec.evaluate.weighted)."""

import json
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_evaluate_report import SETTINGS, smeared_predictions
from test_evaluate_weights import hand_made_generation

from nurec.evaluate import metrics as m
from nurec.evaluate.fluxes import ICECUBE_NUMU_2022, flux_models, flux_names
from nurec.evaluate.report import MethodPredictions, build_report
from nurec.evaluate.truth import truth_table
from nurec.evaluate.weighted import effective_areas, effective_sample_size, fluxes_by_name
from nurec.evaluate.weights import SECONDS_PER_YEAR, event_rates_hz, expected_events_per_year
from sim.config import SimulationConfig
from sim.simulate import simulate_events


@pytest.fixture(scope="module")
def weighted_report(tmp_path_factory):
    events, metadata = simulate_events(
        SimulationConfig(detector="icecube86", flavors=("numu", "nue"), n_events=120, seed=5))
    truth = truth_table(events)
    smeared = smeared_predictions(truth, "smeared", sigma_deg=2.0, log_e_sigma=0.2, seed=1)
    failed = smeared.index[::3]
    smeared.loc[failed, ["dir_x", "dir_y", "dir_z", "energy"]] = np.nan
    smeared.loc[failed, "fit_status"] = "failed: test"
    leading = smeared_predictions(truth, "leading", sigma_deg=1.0, log_e_sigma=0.1, seed=2).iloc[:40]
    methods = [MethodPredictions("smeared", "1", smeared),
               MethodPredictions("leading", "1", leading, subsample=True)]
    out = tmp_path_factory.mktemp("weighted")
    report = build_report(truth, metadata, methods, out, SETTINGS, command="pytest")
    return report, truth, metadata, smeared, failed


def test_events_per_year_are_the_summed_rates_of_the_reconstructed_events(weighted_report):
    report, truth, metadata, smeared, failed = weighted_report
    section = report.metrics["weighted_metrics"]
    assert section["available"]
    assert [f["flux"] for f in section["fluxes"]] == [f.name for f in flux_models()]
    for flux, model in zip(section["fluxes"], flux_models(), strict=True):
        assert model.citation == flux["citation"]
        assert flux["events_per_year_triggered"] == pytest.approx(expected_events_per_year(truth, metadata, model))
        ok = ~truth.index.isin(failed)
        assert flux["events_per_year_reconstructed"]["smeared"] == pytest.approx(
            expected_events_per_year(truth, metadata, model, mask=ok))
        # The leading 40 of 120 events stand for the whole sample: scaled by 3.
        rates = event_rates_hz(truth, metadata, model)
        assert flux["events_per_year_reconstructed"]["leading"] == pytest.approx(
            rates[:40].sum() * SECONDS_PER_YEAR * 3)
        assert flux["n_effective_reconstructed"]["smeared"] == pytest.approx(effective_sample_size(rates[ok]))


def test_weighted_median_is_the_flux_weighted_median_of_the_per_event_errors(weighted_report):
    report, truth, metadata, smeared, failed = weighted_report
    flux = next(f for f in report.metrics["weighted_metrics"]["fluxes"] if f["flux"] == ICECUBE_NUMU_2022.name)
    row = next(r for r in flux["summary_table"] if r["method"] == "smeared")
    tracks = truth["is_track"].to_numpy() & ~truth.index.isin(failed)
    predicted = smeared.loc[tracks, ["dir_x", "dir_y", "dir_z"]].to_numpy()
    true = truth.loc[tracks, ["dir_x", "dir_y", "dir_z"]].to_numpy()
    error_deg = np.degrees(np.arccos(np.clip(np.sum(predicted * true, axis=1), -1, 1)))
    weights = event_rates_hz(truth, metadata, ICECUBE_NUMU_2022)[tracks]
    assert row["track_median_deg"] == pytest.approx(m.weighted_median(error_deg, weights), rel=1e-6)
    assert row["track_median_n"] == tracks.sum()  # counts stay counts of events
    unweighted = report.metrics["methods"]["smeared"]["direction"]["track"]["median"]
    assert unweighted == pytest.approx(np.median(error_deg), rel=1e-6)


def test_report_html_shows_weighted_tables_and_effective_areas(weighted_report):
    report, *_ = weighted_report

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.current, self.images = {}, None, []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.current = attrs.get("class")
                self.tables.setdefault(self.current, []).append(0)
            elif tag == "tr" and self.current:
                self.tables[self.current][-1] += 1
            elif tag == "img":
                self.images.append(attrs.get("alt"))

        def handle_endtag(self, tag):
            if tag == "table":
                self.current = None

    parser = Tables()
    parser.feed(report.html_path.read_text())
    assert parser.tables["weighted"] == [1 + 2, 1 + 2]  # header + two methods, one table per flux
    assert parser.tables["areas"] == [1 + 3 * 2]  # trigger and two methods, for νμ and νe
    assert "Effective area" in parser.images
    assert "effective_area" in report.metrics["figures"]
    assert (report.out_dir / "plots" / "effective_area.png").read_bytes().startswith(b"\x89PNG")
    text = (report.out_dir / "summary.md").read_text()
    assert "Weighted by honda2014_spl_solmin" in text and "Weighted by icecube_diffuse_numu_9.5yr" in text
    stored = json.loads(report.metrics_path.read_text())
    assert stored["effective_areas"]["available"] and stored["weighted_metrics"]["available"]


def test_effective_area_rows_match_the_weights_module(weighted_report):
    report, truth, metadata, smeared, failed = weighted_report
    areas = pd.DataFrame(report.metrics["effective_areas"]["rows"])
    assert set(areas["selection"]) == {"trigger", "smeared", "leading"}
    trigger = areas[(areas.selection == "trigger") & (areas.cos_zenith_low == -1) & (areas.cos_zenith_high == 1)]
    assert trigger["n_events"].sum() == len(truth)
    smeared_rows = areas[(areas.selection == "smeared") & (areas.cos_zenith_low == -1) & (areas.cos_zenith_high == 1)]
    assert smeared_rows["n_events"].sum() == len(truth) - len(failed)
    assert (smeared_rows["area_m2"].to_numpy() <= trigger["area_m2"].to_numpy() + 1e-12).all()


def test_subsampled_method_area_is_scaled_to_the_whole_sample():
    truth, metadata, sigma_n_volume_cm2 = hand_made_generation(0.3, 0.6)
    truth = truth.assign(event_id=np.arange(len(truth)))
    first_half = truth.iloc[: len(truth) // 2]  # all the ν_μ, none of the ν̄_μ, which have the same area
    result = SimpleNamespace(name="slow", per_event=pd.DataFrame({"event_id": first_half["event_id"],
                                                                  "fit_status": "ok"}))
    bins = SimpleNamespace(energy_edges_gev=np.array([10.0, 100.0, 300.0, 1000.0]))
    areas = effective_areas(truth, metadata, [result], bins)
    assert areas["energy_edges_gev"] == [100.0, 300.0, 500.0]  # clipped to the generated energies
    rows = pd.DataFrame(areas["rows"])
    whole_sky = rows[(rows.cos_zenith_low == -1.0) & (rows.cos_zenith_high == 1.0)]
    expected_m2 = 0.45 * sigma_n_volume_cm2 * 1e-4
    for selection in ("trigger", "slow"):
        assert whole_sky[whole_sky.selection == selection]["area_m2"].to_numpy() == pytest.approx(expected_m2, rel=1e-9)
    assert set(rows[rows.selection == "slow"]["subsample_fraction"]) == {0.5}
    bands = rows[(rows.selection == "trigger") & (rows.cos_zenith_high == 0.0)]
    assert bands["area_m2"].to_numpy() == pytest.approx(0.6 * sigma_n_volume_cm2 * 1e-4, rel=1e-9)


def test_without_oneweight_the_sections_say_why(tmp_path):
    events, metadata = simulate_events(SimulationConfig(detector="icecube86", flavors=("numu",), n_events=30, seed=3))
    truth = truth_table(events).assign(weight=np.nan)  # as for real data
    methods = [MethodPredictions("smeared", "1", smeared_predictions(truth, "smeared", 2.0, 0.2, 1))]
    report = build_report(truth, metadata, methods, tmp_path, SETTINGS, command="pytest")
    for key in ("weighted_metrics", "effective_areas"):
        assert report.metrics[key] == {"available": False, "reason": report.metrics[key]["reason"]}
        assert report.metrics[key]["reason"].startswith("weight: events carry no OneWeight")
    page = report.html_path.read_text()
    assert page.count("Not available: weight: events carry no OneWeight") == 2
    assert "effective_area" not in report.metrics["figures"]


def test_flux_choice_by_name():
    assert flux_names() == [f.name for f in flux_models()]  # the help text's list is the models'
    assert [f.name for f in fluxes_by_name("all")] == [f.name for f in flux_models()]
    assert fluxes_by_name("none") == []
    assert [f.name for f in fluxes_by_name(ICECUBE_NUMU_2022.name)] == [ICECUBE_NUMU_2022.name]
    with pytest.raises(ValueError, match="fluxes: 'honda' is not all, none or one of"):
        fluxes_by_name("honda")
