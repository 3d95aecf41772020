"""`nurec display`: titles that count what is drawn and name the event type as physicists write it."""

import awkward as ak
import numpy as np
import pytest

from nurec.cli import main
from nurec.cli.display import event_title, format_energy, hit_counts
from nurec.evaluate.truth import interaction_label
from nurec.geometry import get_geometry


@pytest.mark.parametrize("pdg, interaction, label", [
    (14, "CC", "νμ CC"),
    (-12, "NC", "ν̄e NC"),
    (16, "cc", "ντ CC"),
    (-14, "", "ν̄μ"),
    (13, None, "μ⁻"),
    (2212, "CC", "PDG 2212 CC"),
    (0, "", ""),
])
def test_interaction_label(pdg, interaction, label):
    assert interaction_label(pdg, interaction) == label


def test_interaction_label_for_figures_is_mathtext():
    assert interaction_label(-12, "NC", mathtext=True) == r"$\bar{\nu}_e$ NC"
    assert interaction_label(14, "CC", mathtext=True) == r"$\nu_\mu$ CC"


def test_format_energy():
    assert [format_energy(e) for e in (850.0, 12_345.0, 2.1e6)] == ["850 GeV", "12.3 TeV", "2.1 PeV"]


def event(sensor_ids, noise, pdg=14, interaction="CC"):
    n = len(sensor_ids)
    hits = {"sensor_id": np.asarray(sensor_ids, np.int32), "t": np.arange(n, dtype=np.float32)}
    if noise is not None:
        hits["is_noise"] = np.asarray(noise, bool)
    truth = {"pdg": pdg, "interaction": interaction, "energy": 12_345.0, "zenith": np.radians(97.2)}
    return ak.Array([{"event_id": 7, "hits": ak.zip(hits, depth_limit=1).tolist(), "truth": truth}])[0]


def test_hit_counts_count_doms_and_noise_as_drawn():
    orca = get_geometry("orca6")  # 31 PMTs per DOM: sensors 0-30 are DOM 0, 31-61 DOM 1
    record = event([0, 1, 2, 31, 40, 100], [False, False, False, False, True, False])
    assert hit_counts(record, orca) == "6 hits on 3 DOMs, 1 noise"
    assert hit_counts(record, orca, show_noise=False) == "5 hits on 3 DOMs (1 noise hit not drawn)"
    assert hit_counts(record) == "6 hits on 6 sensors, 1 noise"  # no geometry: sensors
    assert hit_counts(event([3], None), orca) == "1 hit on 1 DOM"  # noise unknown (real data)


def test_event_title_names_the_type_and_counts_what_is_drawn():
    title = event_title(event([0, 1, 31], [False, True, False], pdg=-12, interaction="NC"), get_geometry("orca6"))
    head, counts = title.splitlines()
    assert head == r"event 7: $\bar{\nu}_e$ NC, E = 12.3 TeV, zenith 97.2°"
    assert counts == "3 hits on 2 DOMs, 1 noise"
    assert "pdg" not in title.lower()


def test_display_draws_an_event_with_the_title(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    assert main(["simulate", "--detector", "icecube-mini", "--events", "2", "--seed", "3", "--out", str(data),
                 "--quiet", "--workers", "0"]) == 0
    titles = []
    import nurec.cli.display as display

    drawn = display.draw_event
    monkeypatch.setattr(display, "draw_event", lambda *a, **k: titles.append(a[3]) or drawn(*a, **k))
    out = tmp_path / "event.png"
    assert main(["display", str(data), "--event", "0", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and f"wrote {out}" in capsys.readouterr().out
    assert titles[0].startswith("event 0: $\\nu_\\mu$ CC, E = ")  # simulate's default: numu CC
    assert " hits on " in titles[0] and " DOMs" in titles[0]
