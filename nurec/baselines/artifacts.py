"""Trained artifacts shipped in nurec/baselines/trained/: where they are and how to load them safely.

Each artifact file is listed in ``card.json`` next to it with its sha256; loaders refuse
a file whose hash differs from the card (the only pickle-based file, the BDT, is loaded
only after this check). Artifacts are made by ``python -m sim.train_baselines``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nurec.geometry import Geometry
from nurec.io.files import write_json_atomic
from nurec.methods.contract import check_detector

TRAINED_DIR = Path(__file__).resolve().parent / "trained"
CARD_NAME = "card.json"


class ArtifactError(FileNotFoundError):
    """A trained artifact is missing or does not match its card; the message says which and why."""


def sha256_of(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(directory: str | os.PathLike = TRAINED_DIR) -> dict[str, Any]:
    """Return the card (training command, metrics, file hashes) of an artifact directory."""
    path = Path(directory) / CARD_NAME
    if not path.exists():
        raise ArtifactError(f"{path}: no model card; run python -m sim.train_baselines --out {directory}")
    return json.loads(path.read_text())


TRAINING_COMMAND = "python -m sim.train_baselines --detector {detector} --out DIR"
"""How the trained baselines are made for a detector (MethodInfo.training)."""


def trained_for(artifact: str | os.PathLike) -> dict[str, Any]:
    """Return the ``trained_for`` record (detectors, energy range) of an artifact file.

    Read from the card beside it; an artifact without a card may name its detector in its
    own JSON (charge-energy) or JSON sidecar (CNN). Empty when nothing is recorded.
    """
    artifact = Path(artifact)
    card_path = artifact.parent / CARD_NAME
    if card_path.exists():
        card = json.loads(card_path.read_text())
        if card.get("trained_for"):
            return dict(card["trained_for"])
        if card.get("detector"):
            return {"detectors": [{"name": str(card["detector"])}]}
    for candidate in (artifact, artifact.with_suffix(".json")):
        if candidate.suffix == ".json" and candidate.exists():
            try:
                detector = json.loads(candidate.read_text()).get("detector")
            except (ValueError, AttributeError):
                detector = None
            if detector:
                return {"detectors": [detector if isinstance(detector, dict) else {"name": str(detector)}]}
    return {}


def artifact_path(name: str, directory: str | os.PathLike = TRAINED_DIR) -> Path:
    """Return the path of artifact ``name`` after checking its sha256 against the card."""
    directory = Path(directory)
    card = read_card(directory)
    entry = card.get("files", {}).get(name)
    if entry is None:
        raise ArtifactError(f"{directory / CARD_NAME}: no artifact '{name}' (train it with sim.train_baselines)")
    path = directory / entry["file"]
    if not path.exists():
        raise ArtifactError(f"{path}: artifact file missing")
    if sha256_of(path) != entry["sha256"]:
        raise ArtifactError(f"{path}: sha256 does not match {CARD_NAME}; refusing to load it")
    return path


def update_card(directory: str | os.PathLike, name: str, file_name: str, info: dict[str, Any],
                common: dict[str, Any] | None = None) -> None:
    """Record artifact ``name`` (its file, sha256 and ``info``) in the card of ``directory``."""
    directory = Path(directory)
    path = directory / CARD_NAME
    card = json.loads(path.read_text()) if path.exists() else {}
    card.update(common or {})
    entry = {"file": file_name, "sha256": sha256_of(directory / file_name), **info}
    if common and "command" in common:
        entry["command"] = common["command"]
    card.setdefault("files", {})[name] = entry
    write_json_atomic(path, card)


def claim_artifact(method: Any, name: str, model: str | os.PathLike | None, trained: bool,
                   geometry: Geometry) -> Path | None:
    """Return the artifact file a trained baseline will load (None: untrained), checked for ``geometry``.

    ``model`` is a file the user gave, else the shipped artifact ``name`` if ``trained``. Sets
    ``method.trained_for`` from the artifact's record, then raises DetectorMismatch (before
    anything is loaded) if the method does not describe itself as valid for ``geometry``.
    """
    path = Path(model) if model is not None else artifact_path(name) if trained else None
    method.trained_for = trained_for(path) if path is not None else {}
    if path is not None:
        check_detector(method.describe(), geometry)
    return path
