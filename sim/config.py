"""Simulation settings as plain dataclasses (loadable from TOML, stored in every dataset)."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

FLAVOR_PDG = {"nue": 12, "numu": 14, "nutau": 16}
INTERACTIONS = ("CC", "NC")
DIRECTION_MODES = ("isotropic", "upgoing")


class ConfigError(ValueError):
    """An invalid simulation setting; the message names the setting."""


@dataclass(frozen=True)
class DetectorResponse:
    """Sensor and readout properties of a detector family.

    ``pmt_area_m2`` is the effective area at normal incidence (photocathode × quantum
    and collection efficiency), tuned so that a 1 TeV cascade in IceCube yields
    ~100-200 photo-electrons (HESE: 6000 pe ≈ 30 TeV deposited, PRL 113 (2014) 101101).
    """

    pmt_area_m2: float
    acceptance_exponent: float
    jitter_ns: float
    noise_rate_hz: float
    spe_charge_sigma: float
    pulse_merge_window_ns: float
    readout_before_ns: float
    readout_after_ns: float
    trigger: str
    coincidence_window_ns: float
    coincidence_floor_span: int
    trigger_threshold: int
    max_pe_per_sensor: int = 64


# IceCube: 10" PMT facing down, TTS ~2 ns, ~500 Hz dark rate per DOM, HLC = neighbour or
# next-to-neighbour DOM on the string within ±1 µs, SMT8 = 8 HLC DOMs
# (JINST 12 (2017) P03012). Readout: -4 µs/+6 µs around the light.
ICECUBE_RESPONSE = DetectorResponse(
    pmt_area_m2=0.02,
    acceptance_exponent=1.5,
    jitter_ns=2.0,
    noise_rate_hz=500.0,
    spe_charge_sigma=0.3,
    pulse_merge_window_ns=10.0,
    readout_before_ns=4000.0,
    readout_after_ns=6000.0,
    trigger="smt",
    coincidence_window_ns=1000.0,
    coincidence_floor_span=2,
    trigger_threshold=8,
)

# KM3NeT: 31 3" PMTs per DOM, TTS ~2 ns sigma, 5-7 kHz per PMT from 40K decays and dark
# counts, L1 = two hits on one DOM within 10 ns (KM3NeT, Eur. Phys. J. C 82 (2022) 26).
# Trigger here: at least 4 DOMs with an L1 coincidence (a simplified 3D trigger).
KM3NET_RESPONSE = DetectorResponse(
    pmt_area_m2=0.002,
    acceptance_exponent=2.0,
    jitter_ns=2.0,
    noise_rate_hz=6000.0,
    spe_charge_sigma=0.3,
    pulse_merge_window_ns=25.0,
    readout_before_ns=500.0,
    readout_after_ns=500.0,
    trigger="l1",
    coincidence_window_ns=10.0,
    coincidence_floor_span=0,
    trigger_threshold=4,
)

RESPONSES = {"icecube": ICECUBE_RESPONSE, "km3net": KM3NET_RESPONSE}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    ``n_events`` is the number of TRIGGERED events to write; the number generated to get
    them is recorded in the dataset metadata (needed for weights). Neutrinos and
    antineutrinos of each flavour, and each interaction, are generated in equal shares.
    """

    detector: str = "icecube86"
    flavors: tuple[str, ...] = ("numu",)
    interactions: tuple[str, ...] = ("CC",)
    n_events: int = 1000
    energy_min_gev: float = 1.0e3
    energy_max_gev: float = 1.0e5
    spectral_index: float = 2.0
    directions: str = "isotropic"
    noise: bool = True
    seed: int = 1
    chunk_events: int = 10_000
    batch_events: int = 256
    volume_margin_m: float | None = None
    max_track_extension_m: float = 20_000.0
    response_overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> SimulationConfig:
        """Return self if every setting is valid, else raise ConfigError naming the setting."""
        for flavor in self.flavors:
            if flavor not in FLAVOR_PDG:
                raise ConfigError(f"flavors: unknown flavour '{flavor}' (use {', '.join(FLAVOR_PDG)})")
        if not self.flavors:
            raise ConfigError("flavors: at least one flavour is needed")
        for interaction in self.interactions:
            if interaction not in INTERACTIONS:
                raise ConfigError(f"interactions: unknown interaction '{interaction}' (use CC, NC)")
        if not self.interactions:
            raise ConfigError("interactions: at least one interaction is needed")
        if not (self.energy_min_gev > 0 and self.energy_max_gev > 0):
            raise ConfigError("energy range: energies must be positive")
        if self.energy_min_gev >= self.energy_max_gev:
            raise ConfigError(
                f"energy range: min ({self.energy_min_gev:g} GeV) must be below max ({self.energy_max_gev:g} GeV)"
            )
        if self.n_events < 1:
            raise ConfigError(f"n_events: must be at least 1, got {self.n_events}")
        if self.chunk_events < 1 or self.batch_events < 1:
            raise ConfigError("chunk_events and batch_events must be at least 1")
        if self.directions not in DIRECTION_MODES:
            raise ConfigError(f"directions: '{self.directions}' is not one of {', '.join(DIRECTION_MODES)}")
        unknown = set(self.response_overrides) - {f.name for f in fields(DetectorResponse)}
        if unknown:
            raise ConfigError(f"response_overrides: unknown setting '{sorted(unknown)[0]}'")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        data = asdict(self)
        data["flavors"] = list(self.flavors)
        data["interactions"] = list(self.interactions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationConfig:
        """Build from a mapping (e.g. a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown simulation setting '{sorted(unknown)[0]}'")
        data = dict(data)
        for key in ("flavors", "interactions"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data).validate()

    @classmethod
    def from_toml(cls, path: str | Path) -> SimulationConfig:
        """Load the [simulation] table (or the whole file) of a TOML file."""
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        return cls.from_dict(data.get("simulation", data))

    def with_updates(self, **changes: Any) -> SimulationConfig:
        """Return a copy with some settings changed."""
        return replace(self, **changes).validate()
