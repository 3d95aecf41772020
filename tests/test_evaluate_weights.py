"""Flux models, per-event rates and effective areas (nurec.evaluate.fluxes / weights)."""

from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from nurec.evaluate.fluxes import ICECUBE_NUMU_2022, flux_models, honda2014_spl_solmin
from nurec.evaluate.truth import truth_table
from nurec.evaluate.weights import (
    SECONDS_PER_YEAR,
    WeightError,
    effective_area_m2,
    event_rates_hz,
    expected_events_per_year,
)
from nurec.io.schema import angles_to_direction
from sim.config import SimulationConfig
from sim.simulate import simulate_events

# nuflux 2.0.7 (in a separate venv with numpy 1.26, since it cannot load under numpy 2):
#   f = nuflux.makeFlux("IPhonda2014_spl_solmin"); f.getFlux(nuflux.NuMu, 1000.0, 0.55) ...
NUFLUX_IPHONDA2014_SPL_SOLMIN = [  # (E [GeV], cos zenith, pdg, getFlux [GeV^-1 cm^-2 s^-1 sr^-1])
    (1.0, 0.95, 14, 0.014544), (1.0, -0.95, 14, 0.015017), (100.0, -0.55, -14, 2.1547e-08),
    (1000.0, 0.55, 14, 2.1625e-11), (3162.3, -0.25, 12, 2.7287e-14), (31.6, 0.05, -12, 5.1309e-07),
    (5000.0, -0.83, 14, 6.3719e-14), (250.0, 0.31, -14, 1.5445e-09),
]
#   g = nuflux.makeFlux("honda2006"), above the Honda 2014 table's 10 TeV
NUFLUX_HONDA2006 = [(1e5, -0.5, 14, 1.7823e-18), (1e5, 0.3, -14, 1.6143e-18), (1e6, -0.9, 12, 4.9956e-24),
                    (3e4, -0.1, 14, 4.7404e-16)]


@pytest.fixture(scope="module")
def simulated():
    """A few simulated νμ/νe CC+NC events inside the Honda table's energies, with their metadata."""
    config = SimulationConfig(detector="icecube86", flavors=("numu", "nue"), interactions=("CC", "NC"),
                              n_events=6, chunk_events=6, energy_min_gev=3e2, energy_max_gev=1e4, seed=3)
    events, metadata = simulate_events(config)
    return truth_table(events), metadata


def honda_by_hand(energy_gev: float, cos_zenith: float, pdg: int) -> float:
    """Φ [GeV^-1 cm^-2 s^-1 sr^-1] from the shipped CSV's four neighbouring rows, linear in log Φ."""
    column = {14: "nu_mu", -14: "nu_mu_bar", 12: "nu_e", -12: "nu_e_bar"}[pdg]
    with resources.files("nurec.evaluate").joinpath("data", "honda2014_spl_solmin.csv").open() as handle:
        rows = [r for r in csv.DictReader(line for line in handle if not line.startswith("#"))]
    table = {(float(r["energy_gev"]), float(r["cos_zenith"])): float(r[column]) for r in rows}
    energies = sorted({e for e, _ in table})
    centres = sorted({c for _, c in table})
    e0 = max(e for e in energies if e <= energy_gev)
    e1 = min(e for e in energies if e > energy_gev)
    c = min(max(cos_zenith, centres[0]), centres[-1])  # constant beyond the outermost bin centres
    c0 = max(x for x in centres if x <= c)
    c1 = min((x for x in centres if x > c), default=c0)
    t = math.log(energy_gev / e0) / math.log(e1 / e0)
    u = 0.0 if c1 == c0 else (c - c0) / (c1 - c0)

    def log_at(cz: float) -> float:
        return (1 - t) * math.log(table[(e0, cz)]) + t * math.log(table[(e1, cz)])

    return math.exp((1 - u) * log_at(c0) + u * log_at(c1)) * 1e-4  # per m² -> per cm²


def test_one_simulated_event_rate_by_hand(simulated):
    truth, metadata = simulated
    event = truth.iloc[0]
    cos_zenith = math.cos(event.zenith)
    # The flux tables' cos zenith is that of ARRIVAL: a neutrino travelling along dir comes from -dir.
    assert cos_zenith == pytest.approx(-event.dir_z, abs=1e-9)
    honda = event.weight * honda_by_hand(event.energy, cos_zenith, int(event.pdg)) / metadata["n_generated"]
    assert event_rates_hz(truth, metadata, honda2014_spl_solmin())[0] == pytest.approx(honda, rel=1e-9)
    astro = event.weight * 0.5 * 1.44e-18 * (event.energy / 1e5) ** -2.37 / metadata["n_generated"]
    assert event_rates_hz(truth, metadata, ICECUBE_NUMU_2022)[0] == pytest.approx(astro, rel=1e-12)
    rates_hz = event_rates_hz(truth, metadata, ICECUBE_NUMU_2022)
    assert expected_events_per_year(truth, metadata, ICECUBE_NUMU_2022) == pytest.approx(
        rates_hz.sum() * SECONDS_PER_YEAR)
    assert expected_events_per_year(truth, metadata, ICECUBE_NUMU_2022, mask=truth.index == 0) == pytest.approx(
        rates_hz[0] * SECONDS_PER_YEAR)


def test_zenith_is_that_of_arrival_up_and_down_going_differ():
    # At 1 GeV the South Pole table differs between arrival from straight above and from below.
    zenith = np.array([0.0, np.pi])  # from above (down-going), from below (up-going)
    direction = angles_to_direction(zenith, np.zeros(2))
    assert direction[:, 2] == pytest.approx([-1.0, 1.0])  # down-going travels down
    truth = pd.DataFrame({"weight": [1.0, 1.0], "energy": [1.0, 1.0], "zenith": zenith, "pdg": [14, 14]})
    rates_hz = event_rates_hz(truth, {"n_generated": 1}, honda2014_spl_solmin())
    assert rates_hz == pytest.approx([1.4586e2 * 1e-4, 1.4878e2 * 1e-4], rel=1e-9)  # rows cos z = 0.95, -0.95


def test_honda_table_agrees_with_nuflux_and_is_continued_above_it():
    flux = honda2014_spl_solmin()
    energy, cos_zenith, pdg, nuflux = map(np.array, zip(*NUFLUX_IPHONDA2014_SPL_SOLMIN, strict=True))
    # nuflux's integral-preserving splines vs linear interpolation of the same table.
    assert flux(energy, cos_zenith, pdg) == pytest.approx(nuflux, rel=0.03)
    energy, cos_zenith, pdg, nuflux = map(np.array, zip(*NUFLUX_HONDA2006, strict=True))
    assert flux(energy, cos_zenith, pdg) == pytest.approx(nuflux, rel=0.15)  # another model (Honda 2006)
    assert flux(1e3, 0.5, 16) == 0.0 and flux(1e3, 0.5, -16) == 0.0  # no conventional ν_τ in the table
    assert flux(0.05, 0.5, 14) == 0.0  # below the table
    continuous = flux(np.array([1e4 * (1 - 1e-9), 1e4 * (1 + 1e-9)]), 0.3, 14)
    assert continuous[0] == pytest.approx(continuous[1], rel=1e-6)


def test_astrophysical_flux_at_100_tev_is_the_cited_normalisation():
    assert ICECUBE_NUMU_2022.per_flavour(1e5) == pytest.approx(1.44e-18, rel=1e-12)
    nu, nubar = ICECUBE_NUMU_2022(1e5, -0.3, np.array([14, -14]))
    assert nu + nubar == pytest.approx(1.44e-18, rel=1e-12) and nu == nubar
    assert ICECUBE_NUMU_2022(1e6, 0.9, 12) == pytest.approx(0.5 * 1.44e-18 * 10**-2.37, rel=1e-12)
    assert "arXiv:2111.10299" in ICECUBE_NUMU_2022.citation
    assert [f.name for f in flux_models()] == ["honda2014_spl_solmin", "icecube_diffuse_numu_9.5yr"]


def hand_made_generation(trigger_fraction_down: float, trigger_fraction_up: float):
    """Return (truth, metadata, σ n V [cm²]) of a νμ CC simulation built on a grid, with known trigger fractions.

    Uniform in energy (γ = 0) on [100, 500] GeV and isotropic, each of ν_μ and ν̄_μ on a 40 × 100
    grid of midpoints in (E, cos zenith): each generated event has the same OneWeight,
    w = σ n_N V · Ω_gen · (E_max − E_min) / f_type, f_type = 1/2. A neutrino that interacts in
    the volume triggers with a fraction that depends on its direction only, so
    A_eff = fraction × σ n_N V exactly.
    """
    sigma_n_volume_cm2 = 1.0e-39 * 5.5e23 * 1.0e15  # σ [cm²] · nucleons/cm³ · V [cm³] (1 km³ of ice)
    energies = 100.0 + 400.0 * (np.arange(40) + 0.5) / 40
    cos_zenith = -1.0 + 2.0 * (np.arange(100) + 0.5) / 100
    e_grid, cz_grid = (a.ravel() for a in np.meshgrid(energies, cos_zenith, indexing="ij"))
    weight = sigma_n_volume_cm2 * 4 * np.pi * 400.0 / 0.5
    rows = []
    for pdg in (14, -14):
        index = np.arange(len(e_grid))
        down = cz_grid > 0
        # Keep every k-th event of a (E, direction) cell stream: exact fractions 3/10 and 6/10.
        keep = np.where(down, index % 10 < 10 * trigger_fraction_down, index % 10 < 10 * trigger_fraction_up)
        rows.append(pd.DataFrame({"energy": e_grid[keep], "zenith": np.arccos(cz_grid[keep]), "pdg": pdg,
                                  "weight": weight}))
    truth = pd.concat(rows, ignore_index=True)
    metadata = {"n_generated": 2 * len(e_grid),
                "config": {"flavors": ["numu"], "interactions": ["CC"], "energy_min_gev": 100.0,
                           "energy_max_gev": 500.0, "directions": "isotropic"}}
    return truth, metadata, sigma_n_volume_cm2


def test_effective_area_of_a_hand_made_generation():
    truth, metadata, sigma_n_volume_cm2 = hand_made_generation(0.3, 0.6)
    edges = [100.0, 200.0, 300.0, 400.0, 500.0]
    area = effective_area_m2(truth, metadata, edges, cos_zenith_edges=[-1.0, 0.0, 1.0])
    assert list(area.columns) == ["flavour", "interactions", "cos_zenith_low", "cos_zenith_high", "e_low_gev",
                                  "e_high_gev", "n_events", "area_m2", "area_error_m2"]
    assert len(area) == 2 * 4 and set(area.flavour) == {"nu_mu"} and set(area.interactions) == {"CC"}
    up = area[area.cos_zenith_high == 0.0]
    down = area[area.cos_zenith_low == 0.0]
    assert up.area_m2.to_numpy() == pytest.approx(0.6 * sigma_n_volume_cm2 * 1e-4, rel=1e-9)
    assert down.area_m2.to_numpy() == pytest.approx(0.3 * sigma_n_volume_cm2 * 1e-4, rel=1e-9)
    assert (up.n_events == 2 * 10 * 50 * 0.6).all()  # ν and ν̄: 10 energies × 50 directions each, 60% kept
    # The whole sky is the mean of the bands; ν̄ alone has the same area as ν here.
    whole = effective_area_m2(truth, metadata, [100.0, 500.0])
    assert whole.area_m2.iloc[0] == pytest.approx(0.45 * sigma_n_volume_cm2 * 1e-4, rel=1e-9)
    per_type = effective_area_m2(truth, metadata, [100.0, 500.0], by="pdg")
    assert list(per_type.flavour) == ["nu_mu", "nu_mu_bar"]
    assert per_type.area_m2.to_numpy() == pytest.approx(0.45 * sigma_n_volume_cm2 * 1e-4, rel=1e-9)
    # A selection after cuts: keeping half of the triggered ν_μ halves their area.
    mask = (truth.pdg == 14) & (truth.index % 2 == 0)
    cut = effective_area_m2(truth, metadata, [100.0, 500.0], mask=mask.to_numpy(), by="pdg")
    assert cut.area_m2.iloc[0] == pytest.approx(0.5 * 0.45 * sigma_n_volume_cm2 * 1e-4, rel=1e-3)
    assert cut.area_m2.iloc[1] == 0.0 and cut.n_events.iloc[1] == 0


def test_effective_area_refuses_bins_outside_the_generation():
    truth, metadata, _ = hand_made_generation(0.3, 0.6)
    with pytest.raises(ValueError, match=r"energy_edges_gev: \[50, 500\] reaches outside the generated \[100, 500\]"):
        effective_area_m2(truth, metadata, [50.0, 500.0])
    up_only = {**metadata, "config": {**metadata["config"], "directions": "upgoing"}}
    with pytest.raises(ValueError, match="cos_zenith_edges"):
        effective_area_m2(truth, up_only, [100.0, 500.0], cos_zenith_edges=[-1.0, 0.5])


def test_missing_weights_or_n_generated_is_a_one_line_error_naming_the_field():
    truth, metadata, _ = hand_made_generation(0.3, 0.6)
    with pytest.raises(WeightError, match="^n_generated: ") as error:
        event_rates_hz(truth, {}, ICECUBE_NUMU_2022)
    assert "\n" not in str(error.value)
    with pytest.raises(WeightError, match="^weight: "):
        event_rates_hz(truth.drop(columns="weight"), metadata, ICECUBE_NUMU_2022)
    with pytest.raises(WeightError, match="^weight: events carry no OneWeight"):
        event_rates_hz(truth.assign(weight=np.nan), metadata, ICECUBE_NUMU_2022)
    with pytest.raises(WeightError, match="^config: "):
        effective_area_m2(truth, {"n_generated": 10}, [100.0, 500.0])
