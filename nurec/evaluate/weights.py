"""Flux-weighted event rates, effective areas and weighted statistics of simulated datasets.

The simulator's OneWeight (``sim/generator.py``) is

    w = σ(E) · n_N · V(E) · Ω_gen · ∫ E^-γ dE / (E^-γ · f_type)        [GeV cm² sr]

with f_type the share of generated events of this (pdg, interaction) type: ν and ν̄ of every
generated flavour, and every generated interaction, are separate types with equal shares. So
for a flux Φ_pdg of ONE particle type [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹] each triggered event contributes

    rate_i = w_i · Φ_{pdg_i}(E_i, cos θ_i) / N_gen                     [1/s]

with N_gen the number of generated events of ALL types (metadata ``n_generated``): the 1/f_type
in w already scales each type up to the whole sample. Σ rate_i is the rate of the generated
types only (e.g. ν_μ + ν̄_μ CC if that is all that was simulated), without absorption in the
Earth (the simulator has none). θ is the zenith the neutrino comes from (``truth.zenith``).

Effective area of one particle type t, averaged over a bin of energy ΔE and solid angle ΔΩ,
follows from the same estimate, N = T ∫ Φ A dE dΩ ≈ T Σ w Φ / N_gen, with Φ constant in the bin:

    A_t = Σ_{i ∈ bin, type t} w_i / (N_gen · ΔE · ΔΩ)                   [cm²]

and a flavour's area is the mean of its ν and ν̄ areas (IceCube's "ν + ν̄ averaged" convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nurec.evaluate.fluxes import FluxModel

SECONDS_PER_YEAR = 365.25 * 86400.0  # Julian year, the astronomers' year of livetime
CM2_TO_M2 = 1.0e-4

FLAVOUR_PDG = {"nue": 12, "numu": 14, "nutau": 16}  # the simulator's flavour names (sim.config)
PDG_NAMES = {12: "nu_e", -12: "nu_e_bar", 14: "nu_mu", -14: "nu_mu_bar", 16: "nu_tau", -16: "nu_tau_bar"}
WEIGHT_COLUMNS = ("weight", "energy", "zenith", "pdg")


class WeightError(ValueError):
    """Events or metadata cannot be weighted; the one-line message names the missing field."""


@dataclass(frozen=True)
class Generation:
    """What a simulated dataset generated, read from its metadata (``sim.simulate.dataset_metadata``)."""

    n_generated: int
    pdgs: tuple[int, ...]  # particle types generated: ν and ν̄ of each flavour
    interactions: tuple[str, ...]
    energy_min_gev: float
    energy_max_gev: float
    cos_zenith_min: float  # range of cos(zenith) of arrival generated: isotropic -1..1,
    cos_zenith_max: float  # up-going -1..0 (travelling up = arriving from below)

    def describe(self) -> str:
        """Return e.g. 'nu_mu, nu_mu_bar CC' (what the weighted sums cover)."""
        return f"{', '.join(PDG_NAMES[p] for p in self.pdgs)} {'+'.join(self.interactions)}"


def n_generated(metadata: Mapping[str, Any]) -> int:
    """Return the number of generated events a dataset's weights are normalised to."""
    value = metadata.get("n_generated")
    if value is None:
        raise WeightError("n_generated: dataset metadata has none (real data, or not simulated by nurec)")
    if int(value) <= 0:
        raise WeightError(f"n_generated: must be positive, got {value}")
    return int(value)


def generation(metadata: Mapping[str, Any]) -> Generation:
    """Return what the dataset generated; WeightError names the first missing metadata field."""
    count = n_generated(metadata)
    config = metadata.get("config")
    if not isinstance(config, Mapping):
        raise WeightError("config: dataset metadata has no simulation config (flavours, energies, directions)")
    for key in ("flavors", "interactions", "energy_min_gev", "energy_max_gev", "directions"):
        if key not in config:
            raise WeightError(f"config.{key}: missing from the dataset metadata")
    unknown = [f for f in config["flavors"] if f not in FLAVOUR_PDG]
    if unknown:
        raise WeightError(f"config.flavors: unknown flavour '{unknown[0]}'")
    pdgs = tuple(sign * FLAVOUR_PDG[f] for f in config["flavors"] for sign in (1, -1))
    up_only = config["directions"] == "upgoing"
    return Generation(count, pdgs, tuple(config["interactions"]), float(config["energy_min_gev"]),
                      float(config["energy_max_gev"]), -1.0, 0.0 if up_only else 1.0)


def _weight_inputs(truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (weight, energy [GeV], cos zenith of arrival, pdg) of a truth table, checked."""
    for name in WEIGHT_COLUMNS:
        if name not in truth.columns:
            raise WeightError(f"{name}: the truth table has no '{name}' column")
    weight = truth["weight"].to_numpy(np.float64)
    if len(weight) and np.isnan(weight).all():
        raise WeightError("weight: events carry no OneWeight (real data, or simulated without weights)")
    return (weight, truth["energy"].to_numpy(np.float64), np.cos(truth["zenith"].to_numpy(np.float64)),
            truth["pdg"].to_numpy(np.int64))


def event_rates_hz(truth: pd.DataFrame, metadata: Mapping[str, Any], flux: FluxModel) -> np.ndarray:
    """Return each event's rate [1/s] under ``flux``: weight · Φ_pdg(E, cos zenith) / n_generated.

    ``truth`` needs ``weight`` [GeV cm² sr], ``energy`` [GeV], ``zenith`` [rad, where the neutrino
    comes from] and ``pdg`` (``nurec.evaluate.truth.truth_table`` gives them); ``metadata`` needs
    ``n_generated``.
    """
    weight, energy, cos_zenith, pdg = _weight_inputs(truth)
    return weight * flux(energy, cos_zenith, pdg) / n_generated(metadata)


def expected_events_per_year(truth: pd.DataFrame, metadata: Mapping[str, Any], flux: FluxModel,
                             mask: np.ndarray | None = None) -> float:
    """Return the events a year of livetime gives under ``flux`` (of the events ``mask`` keeps)."""
    rates_hz = event_rates_hz(truth, metadata, flux)
    if mask is not None:
        rates_hz = rates_hz[np.asarray(mask, dtype=bool)]
    return float(np.sum(rates_hz) * SECONDS_PER_YEAR)


def effective_area_m2(truth: pd.DataFrame, metadata: Mapping[str, Any], energy_edges_gev: Sequence[float],
                      mask: np.ndarray | None = None, by: str = "flavour",
                      cos_zenith_edges: Sequence[float] | None = None) -> pd.DataFrame:
    """Return the effective area [m²] per flavour (or particle type), zenith band and true-energy bin.

    ``mask`` keeps the events that pass a selection (e.g. a method's fit_status == "ok"); without
    it the area is that of the triggered events written. ``by="flavour"`` averages ν and ν̄ (a row
    per generated flavour: nu_e, nu_mu, nu_tau); ``by="pdg"`` gives a row per particle type.
    ``cos_zenith_edges`` are bands of cos(zenith) of ARRIVAL (-1 up-going through the Earth, +1
    down-going); by default one band, the directions generated. Areas sum over the generated
    interactions (column ``interactions``). Bins must lie inside the generated energies and
    directions: outside them nothing was simulated, so no area can be estimated there.

    Columns: flavour, interactions, cos_zenith_low, cos_zenith_high, e_low_gev, e_high_gev,
    n_events, area_m2, area_error_m2 (statistical: √Σw² in place of Σw).
    """
    if by not in ("flavour", "pdg"):
        raise ValueError(f"by: '{by}' is not 'flavour' or 'pdg'")
    gen = generation(metadata)
    weight, energy, cos_zenith, pdg = _weight_inputs(truth)
    energy_edges = _checked_edges("energy_edges_gev", energy_edges_gev, gen.energy_min_gev, gen.energy_max_gev)
    if cos_zenith_edges is None:
        cos_zenith_edges = (gen.cos_zenith_min, gen.cos_zenith_max)
    zenith_edges = _checked_edges("cos_zenith_edges", cos_zenith_edges, gen.cos_zenith_min, gen.cos_zenith_max)
    keep = np.ones(len(weight), bool) if mask is None else np.asarray(mask, dtype=bool)
    if len(keep) != len(weight):
        raise ValueError(f"mask: {len(keep)} entries for {len(weight)} events")
    if by == "flavour":
        groups = {PDG_NAMES[p]: (p, -p) for p in gen.pdgs if p > 0}
    else:
        groups = {PDG_NAMES[p]: (p,) for p in gen.pdgs}
    e_bin = np.searchsorted(energy_edges, energy, side="right") - 1
    z_bin = np.searchsorted(zenith_edges, cos_zenith, side="right") - 1
    z_bin[cos_zenith == zenith_edges[-1]] = len(zenith_edges) - 2  # the top edge belongs to the last band
    rows = []
    for name, types in groups.items():
        in_group = keep & np.isin(pdg, types)
        for k in range(len(zenith_edges) - 1):
            solid_angle_sr = 2 * np.pi * (zenith_edges[k + 1] - zenith_edges[k])
            for b in range(len(energy_edges) - 1):
                selected = in_group & (z_bin == k) & (e_bin == b)
                # Each type's area is Σw / (N_gen ΔE ΔΩ); a flavour's is the mean over its ν and ν̄.
                norm_cm2 = gen.n_generated * (energy_edges[b + 1] - energy_edges[b]) * solid_angle_sr * len(types)
                rows.append({
                    "flavour": name, "interactions": "+".join(gen.interactions),
                    "cos_zenith_low": zenith_edges[k], "cos_zenith_high": zenith_edges[k + 1],
                    "e_low_gev": energy_edges[b], "e_high_gev": energy_edges[b + 1],
                    "n_events": int(selected.sum()),
                    "area_m2": weight[selected].sum() / norm_cm2 * CM2_TO_M2,
                    "area_error_m2": np.sqrt(np.sum(weight[selected] ** 2)) / norm_cm2 * CM2_TO_M2,
                })
    return pd.DataFrame(rows)


def _checked_edges(name: str, edges: Sequence[float], low: float, high: float) -> np.ndarray:
    """Return increasing bin edges inside [low, high] (to rounding), else a one-line ValueError."""
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"{name}: need at least two increasing edges")
    slack = 1e-9 * max(abs(low), abs(high), 1.0)
    if edges[0] < low - slack or edges[-1] > high + slack:
        raise ValueError(f"{name}: [{edges[0]:g}, {edges[-1]:g}] reaches outside the generated [{low:g}, {high:g}]")
    return edges
