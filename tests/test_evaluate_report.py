"""The quality report: failures shown, HTML self-contained and renderable, metrics.json complete,
verdicts from paired comparisons, energy bias per decade, truth references stated."""

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nurec.evaluate.plots import FIGURES
from nurec.evaluate.quality import (
    EVENT_WEIGHT_COLUMN,
    NO_PREDICTION,
    EvaluationSettings,
    evaluate_method,
    summary_row,
)
from nurec.evaluate.report import (
    TIMING_KEY,
    MethodPredictions,
    build_report,
    load_method_predictions,
    summary_text,
    without_timing,
)
from nurec.evaluate.truth import truth_table
from nurec.io.predictions import write_predictions
from nurec.io.schema import empty_predictions, finish_predictions
from nurec.methods.run import Provenance
from sim.config import SimulationConfig
from sim.simulate import simulate_events

SETTINGS = EvaluationSettings(n_bootstrap=200)
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def smeared_predictions(truth, name, sigma_deg, log_e_sigma, seed):
    """Predictions = truth smeared by a known amount (direction, energy), calibrated uncertainty."""
    rng = np.random.default_rng(seed)
    table = empty_predictions(truth["event_id"].to_numpy(), name)
    direction = truth[["dir_x", "dir_y", "dir_z"]].to_numpy() + rng.normal(0, np.radians(sigma_deg), (len(truth), 3))
    table[["dir_x", "dir_y", "dir_z"]] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    table["energy"] = truth["energy"].to_numpy() * 10 ** rng.normal(0.0, log_e_sigma, len(truth))
    table["angular_uncertainty_deg"] = 1.5096 * sigma_deg
    table["p_track"] = np.clip(truth["is_track"].to_numpy() + rng.normal(0, 0.3, len(truth)), 0, 1)
    return finish_predictions(table)


@pytest.fixture(scope="module")
def sample():
    events, metadata = simulate_events(
        SimulationConfig(detector="icecube86", flavors=("numu", "nue"), n_events=160, seed=11)
    )
    return truth_table(events), metadata


@pytest.fixture(scope="module")
def report(sample, tmp_path_factory):
    truth, metadata = sample
    good = smeared_predictions(truth, "smeared", sigma_deg=2.0, log_e_sigma=0.2, seed=1)
    flaky = smeared_predictions(truth, "flaky", sigma_deg=5.0, log_e_sigma=0.4, seed=2)
    failed = flaky.index[::4]
    flaky.loc[failed, ["dir_x", "dir_y", "dir_z", "energy", "angular_uncertainty_deg", "p_track"]] = np.nan
    flaky.loc[failed, "fit_status"] = "failed: 2 hits, need at least 3"
    flaky = finish_predictions(flaky).drop(index=[1, 2, 3])  # three events without any prediction row
    methods = [
        MethodPredictions("smeared", "1.0", good, throughput={"events_per_s_per_core": 2000.0}),
        MethodPredictions("flaky", "0.1", flaky, throughput={"events_per_s_per_core": 15.0}),
    ]
    out = tmp_path_factory.mktemp("report")
    return build_report(truth, metadata, methods, out, SETTINGS, command="pytest"), len(failed), out


def test_failed_fits_appear_in_summary_metrics_and_html(report):
    result, n_failed, out = report
    row = result.summary.set_index("method").loc["flaky"]
    assert row["events"] == 160
    assert row["failed"] == n_failed + 3
    counts = json.loads((out / "metrics.json").read_text())["methods"]["flaky"]["counts"]
    assert counts["n_failed"] == n_failed + 3
    assert counts["n_missing_predictions"] == 3
    assert counts["failure_reasons"]["2 hits, need at least 3"] == n_failed
    assert counts["failure_reasons"][NO_PREDICTION.removeprefix("failed: ")] == 3
    page = (out / "index.html").read_text()
    assert "2 hits, need at least 3" in page
    assert result.summary.set_index("method").loc["smeared", "failed"] == 0


def test_smeared_method_metrics_recover_the_known_smear(report):
    result, _, _ = report
    metrics = {r.name: r.metrics for r in result.results}["smeared"]
    # 2D Gaussian of sigma 2 deg per axis: median opening angle sqrt(2 ln 2) * 2 deg = 2.35 deg.
    assert metrics["direction"]["all"]["median"] == pytest.approx(2.35, rel=0.2)
    assert metrics["energy"]["all"]["resolution_log10"] == pytest.approx(0.2, rel=0.25)
    assert metrics["uncertainty"]["coverage_68"] == pytest.approx(0.68, abs=0.13)  # 3.5 binomial sigma at n=160
    assert metrics["classification"]["auc"] > 0.9


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.external, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "table":
            self.tables += 1
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


def test_html_is_self_contained_and_every_image_is_a_decodable_png(report):
    from PIL import Image

    _, _, out = report
    page = (out / "index.html").read_text()
    parser = _PageParser()
    parser.feed(page)
    assert parser.external == []
    # Every figure (all quantities are estimated by "smeared") and the effective area (the events carry OneWeight).
    assert len(parser.images) == len(FIGURES) + 1
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(__import__("io").BytesIO(png)) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
    assert page.index("Summary") < page.index("<img")  # summary table comes before the figures


def test_metrics_json_is_strict_json_with_dataset_and_method_provenance(report):
    _, _, out = report

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=reject)
    dataset = metrics["dataset"]
    assert dataset["detector"] == "icecube86"
    assert dataset["flavours"] == ["numu", "nue"]
    assert dataset["energy_range_gev"] == [1000.0, 100000.0]
    assert dataset["seed"] == 11 and dataset["n_events"] == 160
    assert metrics["methods"]["smeared"]["version"] == "1.0"
    assert metrics[TIMING_KEY]["flaky"]["events_per_s_per_core"] == 15.0
    assert "events_per_s_per_core" not in json.dumps(without_timing(metrics))  # timing lives in one place
    binned = metrics["methods"]["smeared"]["direction"]["track_vs_energy"]
    assert sum(row["n"] for row in binned) == dataset["n_tracks"]
    assert any(row["low_stats"] for row in binned)  # 160 events over 4 bins and 2 classes


def test_same_inputs_give_byte_identical_metrics_and_figures(sample, report, tmp_path):
    truth, metadata = sample
    _, _, out = report
    methods = [MethodPredictions("smeared", "1.0", smeared_predictions(truth, "smeared", 2.0, 0.2, 1),
                                 throughput={"events_per_s_per_core": 2000.0})]
    first = build_report(truth, metadata, methods, tmp_path / "a", SETTINGS, command="pytest")
    second = build_report(truth, metadata, methods, tmp_path / "b", SETTINGS, command="pytest")
    assert (first.metrics_path.read_bytes() == second.metrics_path.read_bytes())
    assert first.figures == second.figures


def test_prediction_files_carry_version_and_throughput_into_the_report(sample, tmp_path):
    truth, _ = sample
    provenance = Provenance("smeared", "3.2", {"name": "icecube86", "hash": ""}, n_events=100, wall_s=1.0, cpu_s=2.0)
    path = write_predictions(smeared_predictions(truth, "smeared", 2.0, 0.2, 1), tmp_path / "p.parquet",
                             provenance.to_dict())
    loaded = load_method_predictions(path)
    assert (loaded.name, loaded.version) == ("smeared", "3.2")
    assert loaded.throughput["events_per_s_per_core"] == 50.0
    # Only the wall-clock rate is known (no CPU time recorded), and the table says so.
    wall_only = Provenance("other", "1", {"name": "icecube86", "hash": ""}, n_events=160, wall_s=2.0)
    path = write_predictions(smeared_predictions(truth, "other", 2.0, 0.2, 1), tmp_path / "q.parquet",
                             wall_only.to_dict())
    result = evaluate_method("other", "1", truth, load_method_predictions(path).predictions, SETTINGS,
                             throughput=load_method_predictions(path).throughput)
    assert summary_text(pd.DataFrame([summary_row(result)])).splitlines()[2].endswith("| 80 (wall) |")
    # A file from another tool carries no provenance: it is evaluated, with no throughput claimed.
    foreign = write_predictions(smeared_predictions(truth, "other", 2.0, 0.2, 1), tmp_path / "r.parquet",
                                {"events_per_s": 80.0})
    assert load_method_predictions(foreign).throughput == {}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium_with_all_images_loaded(report, tmp_path):
    _, _, out = report
    page = (out / "index.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.setAttribute('data-images',i.length+':'+i.filter(x=>x.complete&&x.naturalWidth>0).length);"
             "});</script></body>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    n_images = len(FIGURES) + 1  # the figures and the effective area
    assert f'data-images="{n_images}:{n_images}"' in done.stdout


# ----------------------------------------------------------------------------- HTML tables and figures
class _Tables(HTMLParser):
    """Collect every table of a page by its class (cell texts per row) and the figure titles."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: list[str] = []
        self._table = self._cell = None
        self._in_figure_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ""
        elif tag == "img" and attrs.get("alt"):
            self.figures.append(attrs["alt"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(" ".join(self._cell.split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse_tables(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text())
    return parser


def biased_predictions(truth, name, log10_bias, seed):
    """Direction smeared by 3 deg, energy = truth energy x 10^log10_bias exactly."""
    table = smeared_predictions(truth, name, sigma_deg=3.0, log_e_sigma=0.0, seed=seed)
    table["energy"] = truth["energy"].to_numpy() * 10.0**log10_bias
    return table


@pytest.fixture(scope="module")
def biased_report(sample, tmp_path_factory):
    truth, metadata = sample
    methods = [MethodPredictions("biased", "1", biased_predictions(truth, "biased", 0.5, 3)),
               MethodPredictions("unbiased", "1", biased_predictions(truth, "unbiased", 0.0, 4))]
    out = tmp_path_factory.mktemp("biased")
    return build_report(truth, metadata, methods, out, SETTINGS, command="pytest")


def test_known_energy_bias_shows_as_plus_half_a_decade_per_decade(biased_report):
    metrics = json.loads(biased_report.metrics_path.read_text())
    decades = metrics["methods"]["biased"]["energy"]["by_decade"]["all"]
    assert [row["e_low_gev"] for row in decades] == pytest.approx([1e3, 1e4])
    for row in decades:
        assert row["bias_log10"] == pytest.approx(0.5, abs=1e-9) and row["resolution_log10"] == pytest.approx(0.0, abs=1e-9)
    assert sum(row["n"] for row in decades) == metrics["dataset"]["n_events"]
    assert metrics["methods"]["unbiased"]["energy"]["by_decade"]["all"][0]["bias_log10"] == pytest.approx(0.0, abs=1e-9)
    # The page's per-decade table says it too, in the biased method's "all" row, with its event count.
    rows = parse_tables(biased_report.html_path).tables["decades"]
    header, body = rows[0], {(r[0], r[1]): r for r in rows[1:]}
    first = body[("biased", "all")][header.index("1-10 TeV")]
    assert first.startswith("+0.50 / 0.00") and f"(n={decades[0]['n']})" in first
    assert body[("unbiased", "all")][header.index("1-10 TeV")].startswith("+0.00 / 0.00")
    assert "+0.50 / 0.00" in (biased_report.out_dir / "summary.md").read_text()


def test_energy_verdict_prefers_the_unbiased_method_on_paired_events(biased_report):
    metrics = json.loads(biased_report.metrics_path.read_text())
    verdict = metrics["verdicts"]["energy"]
    assert verdict["best"] == "unbiased" and verdict["runner_up"] == "biased"
    assert verdict["best_loss"] == pytest.approx(0.0, abs=1e-9)  # exact energies
    assert verdict["n_events_compared"] == metrics["dataset"]["n_events"]
    # 3-deg smears of different seeds: the direction verdicts exist but are close calls.
    for task in ("track_direction", "cascade_direction"):
        assert metrics["verdicts"][task]["best"] in ("biased", "unbiased")
        assert 0.7 < metrics["verdicts"][task]["ratio"] < 1.5
    pair = metrics["paired_comparisons"]["track_direction"][0]
    assert {pair["method_a"], pair["method_b"]} == {"biased", "unbiased"}
    assert pair["ratio_ci_low"] <= pair["ratio_b_to_a"] <= pair["ratio_ci_high"]
    assert pair["n_events"] == metrics["dataset"]["n_tracks"]
    migration = metrics["methods"]["biased"]["energy"]["migration"]
    assert migration["n"] == metrics["dataset"]["n_events"]
    assert sum(map(sum, migration["counts"])) + sum(migration["reco_below"]) + sum(migration["reco_above"]) == migration["n"]


def test_html_shows_verdicts_first_with_counts_and_the_figure_list(report):
    result, _, out = report
    metrics = json.loads((out / "metrics.json").read_text())
    page = (out / "index.html").read_text()
    assert page.index("Verdicts") < page.index("<h2>Summary") < page.index("<img")
    tables = parse_tables(out / "index.html")
    verdicts = {row[0]: row for row in tables.tables["verdicts"][1:]}
    header = tables.tables["verdicts"][0]
    for verdict in metrics["verdicts"].values():
        row = verdicts[verdict["title"]]
        assert row[header.index("Best method")] == (verdict["best"] or "no verdict")
        if verdict.get("runner_up"):
            assert row[header.index("Runner-up / best [CI]")].startswith(f"{verdict['ratio']:.2f}x [")
            assert row[header.index("Events compared")] == str(verdict["n_events_compared"])
    # smeared (2 deg) beats flaky (5 deg) on the tracks both reconstructed, clearly.
    track = metrics["verdicts"]["track_direction"]
    assert track["best"] == "smeared" and track["runner_up"] == "flaky" and track["decisive"]
    assert track["n_events_compared"] == int(((result.results[1].per_event["fit_status"] == "ok")
                                              & result.results[1].per_event["is_track"]).sum())
    # every summary number carries its event count
    summary = tables.tables["summary"]
    track_cell = summary[1][summary[0].index("Median angular error, tracks [deg]")]
    assert f"(n={metrics['methods']['smeared']['direction']['track']['n']})" in track_cell
    # the figures on the page are those of metrics.json: the effective area, then FIGURES in order
    assert tables.figures == ["Effective area"] + [FIGURES[key][0] for key in FIGURES if key in metrics["figures"]]
    assert {"energy_migration", "direction_vs_event_properties"} <= set(metrics["figures"])
    # truth references are printed
    assert "the neutrino&#x27;s energy (truth.energy)" in page or "the neutrino's energy (truth.energy)" in page
    assert "direction_reference = <code>neutrino</code>" in page


def test_cells_from_few_events_are_marked_and_methods_with_few_events_not_judged(sample, tmp_path):
    truth, metadata = sample
    few = smeared_predictions(truth, "few", sigma_deg=0.5, log_e_sigma=0.1, seed=5).iloc[:30]
    methods = [MethodPredictions("smeared", "1", smeared_predictions(truth, "smeared", 2.0, 0.2, 1)),
               MethodPredictions("few", "1", few, subsample=True)]
    report = build_report(truth, metadata, methods, tmp_path, SETTINGS, command="pytest")
    metrics = report.metrics
    n_tracks = int(truth["is_track"].iloc[:30].sum())
    assert n_tracks < 20
    # "few" is far better on its few tracks, but too few to be judged: smeared wins by default.
    assert metrics["verdicts"]["track_direction"]["best"] == "smeared"
    assert "few" in metrics["verdicts"]["track_direction"]["excluded"]
    row = parse_tables(report.html_path).tables["summary"][2]
    assert row[0] == "few" and f"(n={n_tracks}*)" in row[4]
    assert f"(n={n_tracks}*)" in summary_text(report.summary)


def test_direction_reference_muon_scores_the_muon_direction(sample, tmp_path):
    truth, metadata = sample
    muon = truth[["muon_dir_x", "muon_dir_y", "muon_dir_z"]].to_numpy()
    has_muon = np.isfinite(muon).all(axis=1)
    assert has_muon.sum() == truth["is_track"].sum() > 20  # νμ CC: every track has its muon
    table = empty_predictions(truth["event_id"].to_numpy(), "muon-copy")
    table[["dir_x", "dir_y", "dir_z"]] = np.where(has_muon[:, None], muon, truth[["dir_x", "dir_y", "dir_z"]].to_numpy())
    methods = [MethodPredictions("muon-copy", "1", finish_predictions(table))]
    as_muon = build_report(truth, metadata, methods, tmp_path / "m", EvaluationSettings(n_bootstrap=50,
                           direction_reference="muon"), command="pytest").metrics
    as_neutrino = build_report(truth, metadata, methods, tmp_path / "n", EvaluationSettings(n_bootstrap=50),
                               command="pytest").metrics
    assert as_muon["methods"]["muon-copy"]["direction"]["track"]["median"] < 1e-5
    kinematic = as_neutrino["dataset"]["median_neutrino_muon_angle_deg"]
    assert as_neutrino["methods"]["muon-copy"]["direction"]["track"]["median"] == pytest.approx(kinematic, rel=0.3)
    assert kinematic > 0.05
    assert "muon" in as_muon["references"]["direction"] and as_muon["settings"]["direction_reference"] == "muon"
    with pytest.raises(ValueError, match="direction_reference"):
        EvaluationSettings(direction_reference="tau")


def test_direction_breakdowns_cover_every_event_once(report):
    result, _, _ = report
    direction = {r.name: r.metrics for r in result.results}["smeared"]["direction"]
    for key in ("vs_zenith", "vs_hit_sensors", "vs_containment"):
        for cls in ("track", "cascade"):
            assert sum(row["n"] for row in direction[key][cls]) == direction[cls]["n"], (key, cls)
    labels = [row["group"] for row in direction["vs_zenith"]["track"]]
    assert "up-going" in labels[0] and "down-going" in labels[-1]


def test_per_event_weights_weight_the_metrics(sample, tmp_path):
    truth, metadata = sample
    predictions = smeared_predictions(truth, "smeared", 2.0, 0.2, 1)
    high = truth["energy"].to_numpy() > np.median(truth["energy"])
    weighted = truth.assign(**{EVENT_WEIGHT_COLUMN: np.where(high, 1.0, 0.0)})
    methods = [MethodPredictions("smeared", "1", predictions)]
    plain = build_report(truth, metadata, methods, tmp_path / "plain", SETTINGS, command="pytest").metrics
    only_high = build_report(weighted, metadata, methods, tmp_path / "w", SETTINGS, command="pytest").metrics
    assert only_high["weighting"]["weighted"] and not plain["weighting"]["weighted"]
    high_only = build_report(truth[high], metadata, methods, tmp_path / "h", SETTINGS, command="pytest").metrics
    energy_w, energy_h = only_high["methods"]["smeared"]["energy"]["all"], high_only["methods"]["smeared"]["energy"]["all"]
    assert energy_w["bias_log10"] == pytest.approx(energy_h["bias_log10"], abs=0.02)
    assert energy_w["n"] == plain["methods"]["smeared"]["energy"]["all"]["n"]  # counts stay counts of events
