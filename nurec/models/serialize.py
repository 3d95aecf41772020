"""Model files: weights + spec + metadata in one torch file that loads with weights_only=True.

Only tensors, strings and numbers are stored (spec and metadata as JSON strings), never
pickled Python objects, so loading a model file cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nurec.models.network import GraphNetwork, ModelSpec

MODEL_FORMAT = "nurec-gnn"
MODEL_FORMAT_VERSION = 1


def model_payload(network: GraphNetwork, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the storable dictionary of a network (tensors and JSON strings only)."""
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "spec_json": json.dumps(network.spec.to_dict(), sort_keys=True),
        "metadata_json": json.dumps(metadata or {}, sort_keys=True, default=str),
        "features_json": json.dumps({"node": network.spec.features.feature_names, "global": network.spec.features.global_feature_names}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
    }


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` with torch.save to ``path`` via a temporary file; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_model(network: GraphNetwork, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write an inference model file; return its path."""
    return atomic_save(model_payload(network, metadata), path)


def network_from_payload(payload: dict[str, Any], source: str = "model") -> tuple[GraphNetwork, dict[str, Any]]:
    """Return (network in eval mode, metadata) rebuilt from a loaded model or checkpoint payload."""
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source}: not a nurec GNN model file (format={payload.get('format')!r})")
    if payload.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ValueError(f"{source}: format_version {payload['format_version']} is newer than this nurec reads")
    spec = ModelSpec.from_dict(json.loads(payload["spec_json"]))
    stored = json.loads(payload.get("features_json", "{}"))
    expected = spec.features.global_feature_names
    if stored.get("global", expected) != expected:
        raise ValueError(f"{source}: trained with event features {stored['global']}, but this nurec computes "
                         f"{expected}; retrain the model with this version")
    network = GraphNetwork(spec)
    network.load_state_dict(payload["state_dict"])
    network.eval()
    return network, json.loads(payload.get("metadata_json", "{}"))


def load_payload(path: str | os.PathLike) -> dict[str, Any]:
    """Return the raw dictionary of a model or checkpoint file (safe load, no pickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: cannot load model file ({err})") from err


def load_network(path: str | os.PathLike) -> tuple[GraphNetwork, dict[str, Any]]:
    """Return (network, metadata) from a model or training checkpoint file."""
    return network_from_payload(load_payload(path), str(path))
