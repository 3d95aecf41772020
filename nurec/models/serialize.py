"""Model files: weights + spec + metadata in one torch file that loads with weights_only=True.

Only tensors, strings and numbers are stored (spec and metadata as JSON strings), never
pickled Python objects. Files are read with ``torch.load(weights_only=True)``, whose
unpickler rebuilds tensors and plain containers only and refuses any other global (a
``__reduce__`` payload is rejected before it runs; pyproject.toml requires a torch whose
weights-only reader has no known code-execution hole), so loading a model file, bundled
or not, cannot run code. The payload is then checked (types, JSON, tensor names and
shapes against the spec's network, built first on torch's "meta" device so a forged spec
allocates nothing) and every problem is a ValueError of one line naming the file. The
bundled default model is also checked against the sha256 the package ships
(nurec.models.reconstruct.DEFAULT_MODEL_SHA256).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nurec.models.network import GraphNetwork, ModelSpec
from nurec.safe_load import one_line, read_weights

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


def _json_object(payload: dict[str, Any], key: str, source: str, default: str = "{}") -> dict[str, Any]:
    text = payload.get(key, default)
    if not isinstance(text, str):
        raise ValueError(f"{source}: {key} is a {type(text).__name__}, expected a JSON string")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{source}: {key} is not JSON ({one_line(err)})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {key} is a JSON {type(value).__name__}, expected an object")
    return value


def _check_metadata(metadata: dict[str, Any], source: str) -> None:
    record = metadata.get("trained_for")
    if record is None:
        return
    detectors = record.get("detectors") if isinstance(record, dict) else ()
    if not isinstance(detectors, list | None) or not all(isinstance(d, str | dict) for d in detectors or ()):
        raise ValueError(f"{source}: metadata trained_for must be an object with a list of detectors")
    energies = record.get("energy_range_gev")
    if energies is not None and not (isinstance(energies, list) and len(energies) == 2
                                     and all(isinstance(e, int | float) for e in energies)):
        raise ValueError(f"{source}: metadata trained_for.energy_range_gev must be two numbers or null")


def network_from_payload(payload: Any, source: str = "model") -> tuple[GraphNetwork, dict[str, Any]]:
    """Return (network in eval mode, metadata) rebuilt from a loaded model or checkpoint payload.

    ValueError (one line naming ``source``) for anything that is not a valid nurec GNN payload.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"{source}: not a nurec GNN model file (holds a {type(payload).__name__})")
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source}: not a nurec GNN model file (format={str(payload.get('format'))[:40]!r})")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ValueError(f"{source}: format_version {str(version)[:20]} is not one this nurec reads "
                         f"(up to {MODEL_FORMAT_VERSION})")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{source}: state_dict is not a mapping of names to tensors")
    spec_data = _json_object(payload, "spec_json", source, default="")
    stored = _json_object(payload, "features_json", source)
    metadata = _json_object(payload, "metadata_json", source)
    _check_metadata(metadata, source)
    try:
        spec = ModelSpec.from_dict(spec_data)
        with torch.device("meta"):  # shapes only: a forged spec cannot make us allocate a huge network
            shapes = {k: (v.shape, v.dtype) for k, v in GraphNetwork(spec).state_dict().items()}
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, RuntimeError) as err:
        raise ValueError(f"{source}: invalid model spec ({one_line(err)})") from None
    expected = spec.features.global_feature_names
    if stored.get("global", expected) != expected:
        raise ValueError(f"{source}: trained with event features {one_line(stored['global'])}, but this nurec "
                         f"computes {expected}; retrain the model with this version")
    if set(shapes) != set(state):
        raise ValueError(f"{source}: tensor names differ from the spec's network "
                         f"(missing {sorted(set(shapes) - set(state))[:3]}, "
                         f"unexpected {sorted(set(state) - set(shapes))[:3]})")
    for name, (shape, dtype) in shapes.items():
        if state[name].shape != shape or state[name].dtype != dtype:
            raise ValueError(f"{source}: {name} is {state[name].dtype} {tuple(state[name].shape)}, "
                             f"expected {dtype} {tuple(shape)}")
    network = GraphNetwork(spec)
    network.load_state_dict(state)
    network.eval()
    return network, metadata


def load_payload(path: str | os.PathLike) -> dict[str, Any]:
    """Return the raw dictionary of a model or checkpoint file (weights-only load: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    payload = read_weights(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a nurec GNN model file (holds a {type(payload).__name__})")
    return payload


def load_network(path: str | os.PathLike) -> tuple[GraphNetwork, dict[str, Any]]:
    """Return (network, metadata) from a model or training checkpoint file."""
    return network_from_payload(load_payload(path), str(path))
