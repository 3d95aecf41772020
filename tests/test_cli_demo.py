"""`nurec demo` end to end on a tiny sample, with whatever methods are registered."""

import json

from nurec.cli import main
from nurec.methods.registry import available_methods


def test_demo_writes_report_covering_every_registered_method(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--events", "60", "--slow-events", "5"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "demo finished in" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["n_events"] == 60
    assert metrics["dataset"]["detector"] == "icecube86"
    assert metrics["command"] == "nurec demo --events 60 --seed 2026 --slow-events 5"
    accounted = set(metrics["methods"]) | set(metrics["skipped_methods"])
    assert accounted == {spec.name for spec in available_methods()}
    for name, method in metrics["methods"].items():
        assert method["counts"]["n"] >= 1
        assert (out / "predictions" / f"{name}.parquet").exists()
        assert name in printed
    assert (out / "index.html").read_text().count("<img") == len(metrics["figures"])


def test_demo_rejects_an_unknown_method_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--events", "10", "--methods", "no-such-fit"]) == 1
    err = capsys.readouterr().err
    assert "unknown method 'no-such-fit'" in err and "Traceback" not in err
