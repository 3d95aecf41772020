"""Training checkpoints: the model payload plus optimiser, schedule and loop state.

Written every epoch (``last.pt``) and at the best validation loss (``best.pt``); both load
with ``torch.load(weights_only=True)`` and are also valid model files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nurec.models.network import GraphNetwork
from nurec.models.serialize import atomic_save, load_payload, model_payload


def save_checkpoint(
    path: str | os.PathLike,
    network: GraphNetwork,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop_state: dict[str, Any],
    metadata: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint; ``loop_state`` must be JSON-able."""
    payload = model_payload(network, metadata)
    payload["optimizer"] = optimizer.state_dict()
    payload["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if not callable(v)}
    payload["loop_state_json"] = json.dumps(loop_state, sort_keys=True)
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Return the checkpoint dictionary with ``loop_state`` decoded."""
    payload = load_payload(path)
    if "optimizer" not in payload:
        raise ValueError(f"{path}: a model file, not a resumable training checkpoint")
    payload["loop_state"] = json.loads(payload.pop("loop_state_json"))
    return payload
