"""The quality report: failures shown, HTML self-contained and renderable, metrics.json complete."""

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nurec.evaluate.quality import (
    NO_PREDICTION,
    EvaluationSettings,
    evaluate_method,
    summary_row,
)
from nurec.evaluate.report import (
    MethodPredictions,
    build_report,
    load_method_predictions,
    summary_text,
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
    assert len(parser.images) == 6  # every figure: all quantities are estimated by "smeared"
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
    assert metrics["methods"]["flaky"]["throughput"]["events_per_s_per_core"] == 15.0
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
    assert 'data-images="6:6"' in done.stdout
