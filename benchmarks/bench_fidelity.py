"""Can official KM3NeT Monte Carlo tell nurec's simulation apart? Event features and a classifier's AUC.

    python benchmarks/bench_fidelity.py [--out fidelity/] [--per-event 3] [--repeats 10] [--seed 12]
                                        [--nominal-background]

For each official km3net-testdata file with hits (table FILES), the official events are read
as ``nurec convert`` reads them, and nurec simulates, on the same detector (the file's detx),
``--per-event`` events per official event with its flavour, interaction and energy (±5%).
Unless ``--nominal-background``, nurec uses the background and PMT calibration measured in the
file itself, as the experiment's run-by-run simulation uses each run's: singles per PMT and
genuine same-DOM coincidences (nurec.evaluate.fidelity.background_rates), the
single-photo-electron ToT (``single_pe_tot_ns``; the official hits are then read with it, so
both samples' charges come from one ToT model), the single-photo-electron charge spectrum
(``single_pe_charge_quantiles``, as KM3NeT calibrates PMT gains on ⁴⁰K hits) and the readout
window's reach before and after the triggered hits (``snapshot_margins_ns``). Printed: the background of both samples; ToT
quantiles of single photo-electrons and of direct hits; ν-μ angles of νμ CC events; per file
the medians and 16-84% ranges of the event features of nurec.evaluate.fidelity, official vs
nurec; per detector with a detx the fraction of modules with light vs distance from the true
track or vertex; per detector (files pooled) the cross-validated ROC AUC of a classifier
separating official from nurec events, with and without the charge features (mean ± spread
over ``--repeats`` CV repeats), and the features that separate best on their own. Histograms
of time residuals and hit charges go to ``--out`` (PNG), every number to ``--out/fidelity.json``.

Targets (the physics-fidelity issue): AUC ≤ 0.70 with charge features and ≤ 0.65 without on
ORCA6; light per module vs distance within ±15% per bin; tail fractions within 2 points.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import km3net_testdata
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nurec.evaluate.fidelity import (  # noqa: E402
    CHARGE_FEATURES,
    FEATURES,
    background_rates,
    event_features,
    feature_separation,
    hit_residuals,
    light_per_module,
    separability,
    single_pe_charge_quantiles,
    single_pe_tot_ns,
    snapshot_margins_ns,
)
from nurec.geometry import get_geometry  # noqa: E402
from nurec.io.sources import iter_events  # noqa: E402
from nurec.physics.medium import get_medium  # noqa: E402
from nurec.ragged import RaggedEvents  # noqa: E402
from sim.config import SimulationConfig  # noqa: E402
from sim.simulate import simulate_events  # noqa: E402

PDG_FLAVOR = {12: "nue", 14: "numu", 16: "nutau"}


@dataclass(frozen=True)
class OfficialFile:
    """An official MC file, the detector it was simulated on, and the group its events are pooled in."""

    label: str
    path: str
    detx: str
    group: str
    positions_from_detx: bool = False  # the file stores no hit positions


FILES = [
    OfficialFile("orca6-v9.2", "offline/KM3NeT_00000049_00011291.mc.gsg_neutrinos.km3sim_sirene_merged.jterbr."
                 "jppmuon_jppshower_static.offline.v9.2.sample.root",
                 "detx/D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx", "ORCA6"),
    OfficialFile("orca115-nue-909", "offline/mcv5.0.gsg_elec-CC_10-100GeV.km3sim.JDK.jte.jmergefit.orca.aanet.909."
                 "evtsample.root", "detx/orca_115strings_av20min17mhorizontal_18OMs_alt9mvertical_v2.detx", "ORCA115"),
    OfficialFile("arca-nue-mcv6", "offline/mcv6.gsg_nue-CCHEDIS_1e4-1e6GeV.sirene.jte.jchain.aanet.1.root",
                 "detx/KM3NeT_-00000001_20171212.detx", "KM3NeT_-00000001"),
    OfficialFile("numucc", "offline/numucc.root", "detx/KM3NeT_-00000001_20171212.detx", "KM3NeT_-00000001",
                 positions_from_detx=True),
]
PMTS_PER_DOM = 31
DISTANCE_EDGES_M = np.array([0, 15, 30, 45, 60, 80, 100, 130, 160, 200])


def official_events(entry: OfficialFile, spe_tot_ns: float | None = None) -> ak.Array:
    """Return the file's events as nurec reads them (the detx only where the file has no positions;
    charges from ToT with ``spe_tot_ns`` as one photo-electron's ToT, if given)."""
    options: dict = {"detx": km3net_testdata.data_path(entry.detx)} if entry.positions_from_detx else {}
    if spe_tot_ns is not None:
        options["spe_tot_ns"] = spe_tot_ns
    return ak.concatenate(list(iter_events(km3net_testdata.data_path(entry.path), "km3net-offline", **options)))


def simulated_events(entry: OfficialFile, official: ak.Array, per_event: int, seed: int,
                     response_overrides: dict | None = None) -> ak.Array:
    """Return ``per_event`` nurec events per official event, on the file's detector, with its flavour,
    interaction and energy (±5%, E^-1 within): matched event by event, so the two samples share
    their spectrum even where nurec's trigger is much less efficient (at a few GeV)."""
    pdg = np.abs(ak.to_numpy(official.truth.pdg))
    energy = ak.to_numpy(official.truth.energy)
    interaction = [str(i) or "CC" for i in ak.to_list(official.truth.interaction)]
    chunks = []
    for i in range(len(official)):
        config = SimulationConfig(
            detector=km3net_testdata.data_path(entry.detx), flavors=(PDG_FLAVOR[int(pdg[i])],),
            interactions=(interaction[i],), n_events=per_event, energy_min_gev=float(energy[i]) / 1.05,
            energy_max_gev=float(energy[i]) * 1.05, spectral_index=1.0, seed=seed * 1000 + i,
            response_overrides=response_overrides or {}, batch_events=1024,
        )
        chunks.append(simulate_events(config)[0])
    return ak.concatenate(chunks)


def summary_rows(label: str, official: pd.DataFrame, nurec: pd.DataFrame) -> list[dict]:
    """Return one row per feature: median [16, 84] of the official and the nurec events."""
    rows = []
    for name in FEATURES:
        row = {"file": label, "feature": name}
        for sample, table in (("official", official), ("nurec", nurec)):
            values = table[name].to_numpy(float)
            values = values[np.isfinite(values)]
            q16, q50, q84 = np.percentile(values, [16, 50, 84]) if len(values) else (np.nan,) * 3
            row[sample] = f"{q50:.3g} [{q16:.3g}, {q84:.3g}]"
        rows.append(row)
    return rows


TOT_QUANTILES = (5, 25, 50, 75, 90, 99)


def tot_quantile_rows(label: str, samples: dict[str, ak.Array], medium) -> list[dict]:
    """Return ToT quantiles [ns] of hits before the light (single photo-electrons) and of direct hits, per sample."""
    rows = []
    names = ["x", "y", "z", "t", "tot_ns"]
    for sample, events in samples.items():
        hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
        residual, _ = hit_residuals(hits, events.truth, medium)
        for kind, chosen in (("before light (1 pe)", residual < -50.0),
                             ("direct", (residual >= -10.0) & (residual <= 25.0))):
            values = np.percentile(hits["tot_ns"][chosen], TOT_QUANTILES) if chosen.any() else [np.nan] * 6
            rows.append({"file": label, "hits": kind, "sample": sample,
                         **{f"q{q}": float(v) for q, v in zip(TOT_QUANTILES, values, strict=True)}})
    return rows


def neutrino_muon_angles_deg(events: ak.Array) -> np.ndarray:
    """Return the angle [deg] between neutrino and muon of the νμ CC events whose truth holds the muon."""
    truth = events.truth
    if "muon_dir_x" not in truth.fields:
        return np.zeros(0)
    cos = ak.to_numpy(sum(truth[f"dir_{c}"] * truth[f"muon_dir_{c}"] for c in "xyz")).astype(float)
    chosen = ak.to_numpy(truth.is_track).astype(bool) & np.isfinite(cos)
    return np.degrees(np.arccos(np.clip(cos[chosen], -1.0, 1.0)))


def module_centres(detx: str) -> np.ndarray:
    """Return the centre of every optical module of a detector file."""
    return get_geometry(km3net_testdata.data_path(detx)).module_position


def plot_distributions(label: str, samples: dict[str, ak.Array], out: Path) -> Path:
    """Write histograms of time residuals and hit charges, official vs nurec; return the PNG path."""
    medium = get_medium("water")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, events in samples.items():
        names = ["x", "y", "z", "t", "charge"]
        hits = RaggedEvents.from_awkward(events.hits, names, {n: np.float64 for n in names})
        residual, _ = hit_residuals(hits, events.truth, medium)
        axes[0].hist(np.clip(residual, -100, 1000), bins=110, range=(-100, 1000), histtype="step", density=True,
                     label=name, linewidth=1.3)
        axes[1].hist(np.clip(hits["charge"], 0, 10), bins=100, range=(0, 10), histtype="step", density=True,
                     label=name, linewidth=1.3)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("time residual to the true hypothesis [ns] (clipped to -100..1000)")
    axes[0].set_ylabel("hits per ns [normalised]")
    axes[1].set_xlabel("hit charge [pe] (both from ToT, nurec.physics.tot; clipped at 10)")
    axes[1].set_ylabel("hits per 0.1 pe [normalised]")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(label)
    fig.tight_layout()
    path = out / f"{label}_residuals_charge.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fidelity", help="directory for fidelity.json and the plots")
    parser.add_argument("--per-event", type=int, default=3, help="simulated events matched to each official event")
    parser.add_argument("--repeats", type=int, default=10, help="cross-validation repeats for the AUC spread")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--nominal-background", action="store_true",
                        help="simulate nurec's default KM3NeT background instead of each file's measured one")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    medium = get_medium("water")
    features: dict[str, dict[str, list[pd.DataFrame]]] = {}
    rows, light, timing = [], [], {}
    background_rows, tot_rows, calibration, kinematics = [], [], [], []
    for index, entry in enumerate(FILES):
        start = time.perf_counter()
        official = official_events(entry)
        centres = module_centres(entry.detx)
        official_background = background_rates(official, centres, PMTS_PER_DOM, medium)
        spe_tot = single_pe_tot_ns(official, medium)
        margin_before, margin_after = snapshot_margins_ns(official)
        # Like the experiment's run-by-run simulation: the background and PMT calibration of the run
        # the file stands for. Its hits are then read with the same single-pe ToT, so both samples'
        # charges come from one ToT model.
        overrides = {} if args.nominal_background else {
            "noise_rate_hz": official_background.singles_rate_hz,
            "coincidence_rate_hz": max(official_background.genuine_pair_rate_hz, 0.0),
            "tot_spe_ns": spe_tot, "snapshot_before_ns": margin_before, "snapshot_after_ns": margin_after}
        if not args.nominal_background:
            official = official_events(entry, spe_tot)
            overrides["spe_charge_quantiles"] = single_pe_charge_quantiles(official, medium)
        calibration.append({"file": entry.label, "single_pe_tot_ns": spe_tot, "snapshot_before_ns": margin_before,
                            "snapshot_after_ns": margin_after})
        matched = simulated_events(entry, official, args.per_event, args.seed + index, overrides)
        timing[entry.label] = round(time.perf_counter() - start, 1)
        for sample, rates in (("official", official_background),
                              ("nurec", background_rates(matched, centres, PMTS_PER_DOM, medium))):
            background_rows.append({"file": entry.label, "sample": sample, **rates.__dict__})
        official_features, nurec_features = event_features(official, medium), event_features(matched, medium)
        group = features.setdefault(entry.group, {"official": [], "nurec": []})
        group["official"].append(official_features)
        group["nurec"].append(nurec_features)
        rows += summary_rows(f"{entry.label} ({len(official)} vs {len(matched)})", official_features, nurec_features)
        for sample, events in (("official", official), ("nurec", matched)):
            table = light_per_module(events, centres, medium, DISTANCE_EDGES_M)
            table.insert(0, "sample", sample)
            table.insert(0, "file", entry.label)
            light.append(table)
        plot_distributions(entry.label, {"official": official, "nurec": matched}, out)
        tot_rows += tot_quantile_rows(entry.label, {"official": official, "nurec": matched}, medium)
        for sample, events in (("official", official), ("nurec", matched)):
            angles = neutrino_muon_angles_deg(events)
            if len(angles):
                kinematics.append({"file": entry.label, "sample": sample, "tracks": len(angles),
                                   **{f"q{q}_deg": float(np.percentile(angles, q)) for q in (16, 50, 84)}})

    print("Optical background before/after each event's light (singles per PMT; same-DOM pairs within 10 ns per DOM)")
    background = pd.DataFrame(background_rows)
    print(background.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("Calibration measured in each file: median ToT of single photo-electrons (hits before the light); "
          "readout window before the first / after the last triggered hit (90% of events)")
    for row in calibration:
        print(f"  {row['file']:16s} single pe {row['single_pe_tot_ns']:.0f} ns; window -{row['snapshot_before_ns']:.0f} "
              f"/ +{row['snapshot_after_ns']:.0f} ns")
    print("nurec simulated with " + ("its nominal background and ToT" if args.nominal_background else
                                     "each file's measured singles and genuine-pair rates, single-pe ToT and "
                                     "charge spectrum, official hits read with that ToT (run-by-run style)")
          + "\n")
    print("ToT quantiles [ns] (official hits as recorded; nurec through nurec.physics.tot)")
    print(pd.DataFrame(tot_rows).to_string(index=False, float_format=lambda v: f"{v:.0f}") + "\n")
    if kinematics:
        print("Neutrino-muon angle of νμ CC events [deg] (quantiles; energy-matched samples)")
        print(pd.DataFrame(kinematics).to_string(index=False, float_format=lambda v: f"{v:.3g}") + "\n")
    summary = pd.DataFrame(rows)
    print("Event features: median [16%, 84%], official vs nurec (energy-matched)")
    print(summary.to_string(index=False))
    light_table = pd.concat(light, ignore_index=True)
    pivot = light_table.pivot_table(index=["file", "distance_low_m", "distance_high_m"], columns="sample",
                                     values="hit_fraction").reset_index()
    pivot["ratio"] = pivot["nurec"] / pivot["official"]
    print("\nFraction of modules hit vs distance from the true track (νμ CC) or vertex [m]")
    print(pivot.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    separations = {}
    print("\nSeparability (official vs nurec, cross-validated ROC AUC, mean ± std over repeats)")
    for group, samples in features.items():
        a, b = pd.concat(samples["official"], ignore_index=True), pd.concat(samples["nurec"], ignore_index=True)
        without = [f for f in FEATURES if f not in CHARGE_FEATURES]
        both = separability(a, b, FEATURES, args.seed, args.repeats)
        no_charge = separability(a, b, without, args.seed, args.repeats)
        separations[group] = {"with_charge": both.__dict__, "without_charge": no_charge.__dict__}
        print(f"  {group:18s} {both.n_a:3d} official vs {both.n_b:3d} nurec events: AUC {both.auc_mean:.3f} ± "
              f"{both.auc_std:.3f} with charge, {no_charge.auc_mean:.3f} ± {no_charge.auc_std:.3f} without")
        single = feature_separation(a, b, FEATURES)
        separations[group]["single_feature_auc"] = single.to_dict()
        print("    most telling single features (AUC): "
              + ", ".join(f"{name} {auc:.2f}" for name, auc in single.head(5).items()))
    result = {"calibration": calibration, "kinematics": kinematics, "background": background_rows, "tot_quantiles": tot_rows, "features": rows, "light_per_module": json.loads(pivot.to_json(orient="records")),
              "separability": separations, "seconds_per_file": timing,
              "settings": {"per_event": args.per_event, "repeats": args.repeats, "seed": args.seed,
                           "nominal_background": args.nominal_background}}
    (out / "fidelity.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"\nplots and fidelity.json in {out}/")


if __name__ == "__main__":
    main()
