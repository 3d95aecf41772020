"""Simulation settings as plain dataclasses (loadable from TOML, stored in every dataset)."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nurec.physics.response import DetectorResponse
from nurec.settings import check_known, field_names

FLAVOR_PDG = {"nue": 12, "numu": 14, "nutau": 16}
INTERACTIONS = ("CC", "NC")
DIRECTION_MODES = ("isotropic", "upgoing")


class ConfigError(ValueError):
    """An invalid simulation setting; the message names the setting."""




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
        check_known(self.response_overrides, field_names(DetectorResponse), "response_overrides", ConfigError)
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
