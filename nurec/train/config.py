"""Training settings as a plain dataclass, loaded with the model spec from one TOML file.

File layout::

    [model]              architecture = "dynedge" | "edgeformer"
    [model.network]      sizes (see DynEdgeConfig / EdgeFormerConfig)
    [model.features]     node features (see FeatureConfig)
    [model.tasks]        loss weights (see TaskConfig)
    [training]           the fields of TrainConfig
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nurec.models.network import ModelSpec
from nurec.settings import settings_from_dict

SCHEDULES = ("onecycle", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, batches, stopping, validation split."""

    seed: int = 1
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 5
    max_events: int = 0
    eval_batch_size: int = 512
    threads: int = 2
    time_limit_min: float = 0.0
    device: str = "cpu"

    def validate(self) -> TrainConfig:
        """Return self if valid, else raise ValueError naming the setting."""
        if self.schedule not in SCHEDULES:
            raise ValueError(f"training.schedule: '{self.schedule}' is not one of {', '.join(SCHEDULES)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"training.val_fraction: must be in (0, 1), got {self.val_fraction}")
        for name in ("epochs", "batch_size", "eval_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"training.learning_rate: must be positive, got {self.learning_rate}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error."""
        return settings_from_dict(cls, data, "training").validate()


def load_config(path: str | Path | None) -> tuple[ModelSpec, TrainConfig]:
    """Return (model spec, training config) from a TOML file (defaults if ``path`` is None)."""
    if path is None:
        return ModelSpec(), TrainConfig()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such config file")
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from err
    unknown = set(data) - {"model", "training"}
    if unknown:
        raise ValueError(f"{path}: unknown table [{sorted(unknown)[0]}] (use [model], [training])")
    return ModelSpec.from_dict(data.get("model", {})), TrainConfig.from_dict(data.get("training", {}))
