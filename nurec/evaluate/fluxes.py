"""Neutrino flux models for weighting simulated events: conventional atmospheric and astrophysical.

A flux model is a callable ``flux(energy_gev, cos_zenith, pdg)`` returning dΦ/dE of ONE particle
type (ν_μ alone, ν̄_μ alone, ...) in GeV⁻¹ cm⁻² s⁻¹ sr⁻¹, with a ``name`` and a ``citation``.
Per particle type, because the simulator generates ν and ν̄ of each flavour as separate types and
folds each type's share into its OneWeight (``sim/generator.py``): Σ wᵢ Φ_{pdgᵢ}(Eᵢ) / N_gen then
counts ν and ν̄ events each with its own flux, and sums them.

``cos_zenith`` is the cosine of the zenith angle the neutrino COMES FROM (IceCube convention, as
``truth.zenith`` in ``nurec/io/schema.py`` and as the Honda tables and nuflux define it): +1 is a
down-going neutrino from the sky above, -1 an up-going one through the Earth. For a direction of
travel ``dir``, ``cos_zenith = -dir_z``.

Not modelled: oscillations (ν_μ disappearance of up-going atmospheric ν below ~100 GeV), absorption
in the Earth (the simulator has none either), prompt (charm) atmospheric ν, and the site: the
South Pole table serves every detector, which at a few GeV misses the geomagnetic differences of
a Mediterranean site by ~10-20%; above ~100 GeV the site no longer matters.

nuflux (the IceCube library of these fluxes) is not a dependency: its only wheels (2.0.7) require
numpy < 2 and its compiled module fails to load under numpy 2, which pandas ≥ 3 needs. The Honda
table it ships is bundled here instead, unchanged, with its provenance in the file's header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

M2_TO_CM2 = 1.0e-4  # a flux per m² is 10⁻⁴ of that per cm²


class FluxModel(Protocol):
    """dΦ/dE per particle type [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹] at (energy [GeV], cos zenith of arrival, pdg)."""

    name: str
    citation: str

    def __call__(self, energy_gev: np.ndarray, cos_zenith: np.ndarray, pdg: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class AstrophysicalPowerLaw:
    """Isotropic power law, equal in every flavour and in ν and ν̄: Φ_ν+ν̄ per flavour = N (E / E0)^-γ.

    ``norm_per_flavour`` is the ν + ν̄ flux of ONE flavour at ``pivot_gev``, as IceCube quotes it;
    each particle type gets half of it (ν:ν̄ = 1:1, flavours 1:1:1 at Earth, as in the fit).
    """

    name: str
    citation: str
    norm_per_flavour: float  # [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹] at pivot_gev, ν + ν̄ of one flavour
    spectral_index: float
    pivot_gev: float = 1.0e5

    def per_flavour(self, energy_gev: np.ndarray) -> np.ndarray:
        """Return the ν + ν̄ flux of one flavour [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹]."""
        return self.norm_per_flavour * (np.asarray(energy_gev, dtype=np.float64) / self.pivot_gev) ** -self.spectral_index

    def __call__(self, energy_gev: np.ndarray, cos_zenith: np.ndarray, pdg: np.ndarray) -> np.ndarray:
        energy_gev, _, pdg = np.broadcast_arrays(np.asarray(energy_gev, float), np.asarray(cos_zenith, float),
                                                 np.asarray(pdg))
        is_neutrino = np.isin(np.abs(pdg), (12, 14, 16))
        return np.where(is_neutrino, 0.5 * self.per_flavour(energy_gev), 0.0)


# Above a table's last energy the flux goes on in the one-meson form of Gaisser's approximation,
# Φ ∝ E^-γ / (1 + E / E_c): the meson's decay gives way to its interaction, and the spectrum
# steepens from E^-γ towards E^-(γ+1) (the approximate solution of the cascade equations in
# T. K. Gaisser, R. Engel, E. Resconi, "Cosmic Rays and Particle Physics", 2nd ed., CUP 2016; the
# form of the muon-flux formula in the PDG review "Cosmic rays"). γ = 2.7 is the primary nucleon
# spectrum's index below the knee.
PRIMARY_INDEX = 2.7


@dataclass(frozen=True)
class TabulatedAtmosphericFlux:
    """A flux table in (energy, cos zenith) per particle type, interpolated linearly in log Φ.

    Interpolation is linear in log10 Φ against log10 E and against cos zenith between the table's
    bin centres (constant beyond the outermost centres, ±0.95 for Honda's 0.1-wide bins). Above the
    table's last energy each cos-zenith bin goes on as E^-2.7 / (1 + E / E_c), with E_c fitted to
    the table's last decade and the curve joined to the table's last value. Honda 2014 continued
    so lies within 0.85–1.10 of nuflux 2.0.7's ``honda2006`` model from 10 TeV to 1 PeV (median
    0.95–1.00, ν_μ, ν̄_μ, ν_e, ν̄_e at five zeniths; the two already differ by up to 10% at 10 TeV);
    within the table it lies within 0.93–1.09 of nuflux's own ``IPhonda2014_spl_solmin`` (5–95%:
    0.98–1.02), whose integral-preserving splines differ from linear interpolation near the horizon.
    Below the first energy the flux is 0; types the table lacks (ν_τ) get 0.
    """

    name: str
    citation: str
    log10_energy: np.ndarray = field(repr=False, compare=False)  # (n_e,) table energies [log10 GeV]
    cos_zenith: np.ndarray = field(repr=False, compare=False)  # (n_z,) increasing bin centres
    log10_flux: dict[int, np.ndarray] = field(repr=False, compare=False)  # pdg -> (n_e, n_z) [GeV⁻¹ cm⁻² s⁻¹ sr⁻¹]
    log10_critical_gev: dict[int, np.ndarray] = field(repr=False, compare=False)  # pdg -> (n_z,) E_c above the table

    def __call__(self, energy_gev: np.ndarray, cos_zenith: np.ndarray, pdg: np.ndarray) -> np.ndarray:
        energy_gev, cos_zenith, pdg = np.broadcast_arrays(
            np.asarray(energy_gev, float), np.asarray(cos_zenith, float), np.asarray(pdg))
        out = np.zeros(energy_gev.shape)
        for code, table in self.log10_flux.items():
            mask = pdg == code
            if mask.any():
                log_flux = self._log10_flux(table, self.log10_critical_gev[code], np.log10(energy_gev[mask]),
                                            cos_zenith[mask])
                out[mask] = 10.0**log_flux
        return out

    def _log10_flux(self, table: np.ndarray, log_ec: np.ndarray, log_e: np.ndarray, cos_z: np.ndarray) -> np.ndarray:
        le, cz = self.log10_energy, self.cos_zenith
        # The bracketing table energies (clipped to the table) and cos-zenith bin centres.
        i = np.clip(np.searchsorted(le, log_e) - 1, 0, len(le) - 2)
        t = np.clip((log_e - le[i]) / (le[i + 1] - le[i]), 0.0, 1.0)
        j = np.clip(np.searchsorted(cz, cos_z) - 1, 0, len(cz) - 2)
        u = np.clip((cos_z - cz[j]) / (cz[j + 1] - cz[j]), 0.0, 1.0)

        def in_bin(col: np.ndarray) -> np.ndarray:
            value = (1 - t) * table[i, col] + t * table[i + 1, col]
            # Above the table (t clipped to 1: its last value), the Gaisser shape from there on.
            steepening = gaisser_shape(log_e, log_ec[col]) - gaisser_shape(le[-1], log_ec[col])
            return np.where(log_e > le[-1], value + steepening, value)

        value = (1 - u) * in_bin(j) + u * in_bin(j + 1)
        return np.where(log_e < le[0], -np.inf, value)


def gaisser_shape(log10_energy: np.ndarray, log10_critical_gev: np.ndarray) -> np.ndarray:
    """Return log10 of E^-2.7 / (1 + E / E_c), the shape a table is continued with above its end."""
    return -PRIMARY_INDEX * log10_energy - np.log10(1.0 + 10.0 ** (log10_energy - log10_critical_gev))


def fit_critical_energy(log10_energy: np.ndarray, log10_flux: np.ndarray) -> float:
    """Return log10 E_c [GeV] of the Gaisser shape (free normalisation) that best fits the points."""

    def residuals(params: np.ndarray) -> np.ndarray:
        return params[0] + gaisser_shape(log10_energy, params[1]) - log10_flux

    start = np.array([float(np.mean(log10_flux + PRIMARY_INDEX * log10_energy)), float(log10_energy[0])])
    return float(least_squares(residuals, start).x[1])


HONDA2014_FILE = "honda2014_spl_solmin.csv"
HONDA2014_COLUMNS = {"nu_mu": 14, "nu_mu_bar": -14, "nu_e": 12, "nu_e_bar": -12}


HONDA2014_NAME = "honda2014_spl_solmin"


@lru_cache(maxsize=1)
def honda2014_spl_solmin() -> TabulatedAtmosphericFlux:
    """Return the conventional atmospheric flux at the South Pole (Honda et al. 2015, solar minimum)."""
    with resources.files("nurec.evaluate").joinpath("data", HONDA2014_FILE).open() as handle:
        table = pd.read_csv(handle, comment="#")
    log_e = np.log10(np.sort(table["energy_gev"].unique()))
    cos_z = np.sort(table["cos_zenith"].unique())
    table = table.sort_values(["energy_gev", "cos_zenith"])
    shape = (len(log_e), len(cos_z))
    log_flux = {pdg: np.log10(table[column].to_numpy(np.float64).reshape(shape) * M2_TO_CM2)
                for column, pdg in HONDA2014_COLUMNS.items()}
    last_decade = log_e >= log_e[-1] - 1.0 - 1e-9
    critical = {pdg: np.array([fit_critical_energy(log_e[last_decade], values[last_decade, k])
                               for k in range(len(cos_z))]) for pdg, values in log_flux.items()}
    return TabulatedAtmosphericFlux(
        name=HONDA2014_NAME,
        citation=("M. Honda et al., Phys. Rev. D 92, 023004 (2015), arXiv:1502.03916: conventional "
                  "atmospheric ν flux at the South Pole, solar minimum, azimuth-averaged (HKKM2014), "
                  "continued above 10 TeV as E^-2.7/(1+E/E_c)"),
        log10_energy=log_e, cos_zenith=cos_z, log10_flux=log_flux, log10_critical_gev=critical,
    )


# IceCube's astrophysical muon-neutrino flux from 9.5 years of up-going tracks: best-fit single
# power law, φ_ν+ν̄ per flavour at 100 TeV = 1.44 (+0.25 −0.26) × 10⁻¹⁸ GeV⁻¹ cm⁻² s⁻¹ sr⁻¹,
# γ = 2.37 ± 0.09, constrained between 15 TeV and 5 PeV (abstract of arXiv:2111.10299).
ICECUBE_NUMU_2022 = AstrophysicalPowerLaw(
    name="icecube_diffuse_numu_9.5yr",
    citation=("IceCube Collaboration (R. Abbasi et al.), ApJ 928, 50 (2022), arXiv:2111.10299: "
              "per-flavour ν+ν̄ 1.44e-18 GeV^-1 cm^-2 s^-1 sr^-1 at 100 TeV, index 2.37"),
    norm_per_flavour=1.44e-18,
    spectral_index=2.37,
    pivot_gev=1.0e5,
)


def flux_models() -> list[FluxModel]:
    """Return the flux models reports and ``nurec inspect`` weight simulated events with."""
    return [honda2014_spl_solmin(), ICECUBE_NUMU_2022]


def flux_names() -> list[str]:
    """Return the names of flux_models() without building the tables (for help texts)."""
    return [HONDA2014_NAME, ICECUBE_NUMU_2022.name]
