"""Trained artifacts of the classical baselines: where they are, how they are checked and read safely.

Loading a model file never runs code:

- Formats. Only formats whose readers cannot execute code are read: JSON (the charge
  calibration, cards, sidecars), ``.npz`` numeric arrays read with ``allow_pickle=False``
  (the BDT's trees, ``nurec.baselines.trees``) and torch state_dicts read with
  ``torch.load(weights_only=True)`` (the CNN; pyproject requires a torch whose
  weights-only reader has no known code-execution hole). Pickle and joblib files are
  never opened: they are refused by suffix, and by content when renamed.
- Bundled artifacts (``nurec/baselines/trained``). Each file's sha256 must equal
  ``SHIPPED_SHA256`` below, a value in the package's code, not in a card beside the file.
- User files (``model=PATH``, ``--model PATH``). Accepted from any folder, since no
  accepted format can run code; each loader checks types, shapes and values before use.
  If a ``card.json`` beside the file lists it, the file's sha256 must match the card:
  this catches a stale or damaged copy and is not a security check (whoever writes the
  file can write the card).

Every problem is an ArtifactError with one line that names the file. Artifacts are made
by ``python -m sim.train_baselines``.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from nurec.geometry import Geometry
from nurec.io.files import write_atomic, write_json_atomic
from nurec.io.integrity import file_digest
from nurec.methods.contract import check_detector
from nurec.safe_load import one_line

TRAINED_DIR = Path(__file__).resolve().parent / "trained"
CARD_NAME = "card.json"

SHIPPED_SHA256 = {
    "bdt_uncertainty.npz": "033d51699f7af6a96929777c2d43828ce7ccced1f48b4541499bc2a599748348",
    "charge_energy.json": "7b99edae6476b128166b2152c08db2d2c545328e430e18c9eb5b5816de3b3090",
    "cnn_energy.pt": "ad4127d52b2dc52ba657ce13e05ffcd9a79e32d14f04b65cc0466f4183029a15",
}
"""sha256 of each bundled artifact file; retraining into TRAINED_DIR prints the new table."""

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav", ".dill")
MAX_JSON_BYTES = 16 << 20
MAX_NPZ_BYTES = 256 << 20  # uncompressed members of one .npz, checked before anything is read
ZIP_MAGIC = b"PK\x03\x04"


class ArtifactError(FileNotFoundError):
    """A trained artifact that is missing, damaged, of a refused format or does not match its hash (one line)."""


def refuse_pickle(path: Path) -> None:
    """Raise ArtifactError if ``path`` is named like a pickle/joblib file (never opened)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ArtifactError(f"{path}: pickle/joblib model files are refused (loading one can run code); "
                            f"retrain with python -m sim.train_baselines, which writes safe formats")


def read_json_object(path: str | os.PathLike, what: str = "JSON file") -> dict[str, Any]:
    """Return the JSON object in ``path``; ArtifactError (one line) if it is missing, too large or not an object."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ArtifactError(f"{path}: {what} of {size} bytes, more than {MAX_JSON_BYTES}")
        data = json.loads(path.read_bytes())
    except ArtifactError:
        raise
    except (OSError, ValueError, RecursionError) as err:
        raise ArtifactError(f"{path}: cannot read {what} ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: {what} is a JSON {type(data).__name__}, expected an object")
    return data


def read_card(directory: str | os.PathLike = TRAINED_DIR) -> dict[str, Any]:
    """Return the card (training command, metrics, file hashes) of an artifact directory, checked for shape."""
    path = Path(directory) / CARD_NAME
    if not path.exists():
        raise ArtifactError(f"{path}: no model card; run python -m sim.train_baselines --out {directory}")
    card = read_json_object(path, "model card")
    files = card.get("files", {})
    if not isinstance(files, dict):
        raise ArtifactError(f"{path}: 'files' is not an object")
    for name, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                and isinstance(entry.get("sha256"), str)):
            raise ArtifactError(f"{path}: files.{name} needs a 'file' and a 'sha256' string")
        if Path(entry["file"]).name != entry["file"]:
            raise ArtifactError(f"{path}: files.{name}.file must be a file name in the card's folder")
    if "trained_for" in card:
        check_trained_for(card["trained_for"], path)
    return card


def check_trained_for(record: Any, source: str | os.PathLike) -> dict[str, Any]:
    """Return a ``trained_for`` record (detectors, energy range) after checking its shape (one-line ArtifactError)."""
    if record is None:
        return {}
    if not isinstance(record, dict):
        raise ArtifactError(f"{source}: trained_for is a {type(record).__name__}, expected an object")
    detectors = record.get("detectors") or []
    if not isinstance(detectors, list) or not all(
            isinstance(d, str) or (isinstance(d, dict) and isinstance(d.get("name", ""), str)
                                   and isinstance(d.get("hash", ""), str)) for d in detectors):
        raise ArtifactError(f"{source}: trained_for.detectors must be a list of names or {{name, hash}} objects")
    energies = record.get("energy_range_gev")
    if energies is not None and not (isinstance(energies, list) and len(energies) == 2 and all(
            isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) for e in energies)):
        raise ArtifactError(f"{source}: trained_for.energy_range_gev must be two finite numbers or null")
    return dict(record)


TRAINING_COMMAND = "python -m sim.train_baselines --detector {detector} --out DIR"
"""How the trained baselines are made for a detector (MethodInfo.training)."""


def trained_for(artifact: str | os.PathLike) -> dict[str, Any]:
    """Return the ``trained_for`` record (detectors, energy range) of an artifact file.

    Read from the card beside it; an artifact without a card may name its detector in its
    own JSON (charge-energy), its JSON sidecar (CNN) or its header (BDT .npz). Empty when
    nothing is recorded.
    """
    artifact = Path(artifact)
    card_path = artifact.parent / CARD_NAME
    if card_path.exists():
        card = read_card(artifact.parent)
        if card.get("trained_for"):
            return check_trained_for(card["trained_for"], card_path)
        if card.get("detector"):
            return {"detectors": [{"name": str(card["detector"])}]}
    if artifact.suffix == ".npz":
        return check_trained_for(read_npz_header(artifact).get("trained_for"), artifact)
    for candidate in (artifact, artifact.with_suffix(".json")):
        if candidate.suffix == ".json" and candidate.exists():
            detector = read_json_object(candidate).get("detector")
            if isinstance(detector, dict | str) and detector:
                return check_trained_for({"detectors": [detector]}, candidate)
    return {}


def _check_shipped(path: Path) -> None:
    """Raise ArtifactError unless a file of the bundled folder has the sha256 the package ships."""
    expected = SHIPPED_SHA256.get(path.name)
    if expected is None:
        raise ArtifactError(f"{path}: not a bundled artifact nurec knows (no entry in "
                            f"nurec.baselines.artifacts.SHIPPED_SHA256); refusing to load it")
    if file_digest(path).sha256 != expected:
        raise ArtifactError(f"{path}: sha256 does not match the value nurec ships "
                            f"(nurec.baselines.artifacts.SHIPPED_SHA256); refusing to load it")


def check_artifact_file(path: str | os.PathLike) -> Path:
    """Return ``path`` once it may be loaded: safe by name, bundled hash or card integrity checked.

    A file in the bundled folder must match SHIPPED_SHA256; another file must match the
    card beside it if one lists it (an integrity check, see the module docstring).
    """
    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: artifact file missing")
    if path.resolve().parent == TRAINED_DIR:
        _check_shipped(path)
        return path
    card_path = path.parent / CARD_NAME
    if card_path.exists():
        for entry in read_card(path.parent).get("files", {}).values():
            if entry["file"] == path.name and file_digest(path).sha256 != entry["sha256"]:
                raise ArtifactError(f"{path}: sha256 does not match {card_path}; refusing to load it "
                                    f"(a stale or damaged copy)")
    return path


def artifact_path(name: str, directory: str | os.PathLike = TRAINED_DIR) -> Path:
    """Return the path of artifact ``name`` listed in the card of ``directory``, checked as check_artifact_file."""
    directory = Path(directory)
    card = read_card(directory)
    entry = card.get("files", {}).get(name)
    if entry is None:
        raise ArtifactError(f"{directory / CARD_NAME}: no artifact '{name}' (train it with sim.train_baselines)")
    return check_artifact_file(directory / entry["file"])


def update_card(directory: str | os.PathLike, name: str, file_name: str, info: dict[str, Any],
                common: dict[str, Any] | None = None) -> None:
    """Record artifact ``name`` (its file, sha256 and ``info``) in the card of ``directory``."""
    directory = Path(directory)
    path = directory / CARD_NAME
    card = json.loads(path.read_text()) if path.exists() else {}
    card.update(common or {})
    entry = {"file": file_name, "sha256": file_digest(directory / file_name).sha256, **info}
    if common and "command" in common:
        entry["command"] = common["command"]
    card.setdefault("files", {})[name] = entry
    write_json_atomic(path, card)


def claim_artifact(method: Any, name: str, model: str | os.PathLike | None, trained: bool,
                   geometry: Geometry) -> Path | None:
    """Return the artifact file a trained baseline will load (None: untrained), checked for ``geometry``.

    ``model`` is a file the user gave, else the shipped artifact ``name`` if ``trained``. The
    file is checked (check_artifact_file), ``method.trained_for`` set from its record, then
    DetectorMismatch raised (before the model is loaded) if the method does not describe
    itself as valid for ``geometry``.
    """
    path = check_artifact_file(model) if model is not None else artifact_path(name) if trained else None
    method.trained_for = trained_for(path) if path is not None else {}
    if path is not None and not method.trained_for:
        raise ArtifactError(f"{path}: no record of the detector it was trained for (a card.json beside it, "
                            f"or the detector its save() writes); not a {method.name} model file?")
    if path is not None:
        check_detector(method.describe(), geometry)
    return path


# .npz archives of numeric arrays (no pickle)

HEADER = "header_json"
"""The .npz member holding a JSON header (uint8 bytes): format, version, feature names, ..."""


def npz_bytes(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> bytes:
    """Return an .npz archive of numeric ``arrays`` plus a JSON ``header``; same inputs, same bytes."""
    members = dict(arrays)
    members[HEADER] = np.frombuffer(json.dumps(header, sort_keys=True, allow_nan=False).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(members[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # fixed: bytes depend on data only
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> Path:
    """Write ``arrays`` and ``header`` as an .npz archive (no pickle), atomically; return the path."""
    return write_atomic(path, npz_bytes(arrays, header))


def _open_npz(path: Path, names: Collection[str] | None) -> zipfile.ZipFile:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != ZIP_MAGIC:
        kind = "a pickle/joblib stream" if magic[:1] in (b"\x80", b"\x78", b"\x1f") else "not an .npz archive"
        raise ArtifactError(f"{path}: {kind}; nurec reads model arrays only from .npz files (never pickle)")
    archive = zipfile.ZipFile(path)
    members = [info.filename for info in archive.infolist()]
    wanted = {f"{name}.npy" for name in names} | {f"{HEADER}.npy"} if names is not None else None
    if wanted is not None and sorted(members) != sorted(wanted):
        archive.close()
        raise ArtifactError(f"{path}: members {sorted(members)}, expected {sorted(wanted)}")
    total = sum(info.file_size for info in archive.infolist())
    if total > MAX_NPZ_BYTES:
        archive.close()
        raise ArtifactError(f"{path}: {total} bytes uncompressed, more than {MAX_NPZ_BYTES}")
    return archive


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as member:
        # allow_pickle=False: an object array is refused instead of unpickled.
        return np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)


def _header(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    raw = _read_member(archive, HEADER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ArtifactError(f"{path}: {HEADER} is not a 1-d uint8 array")
    try:
        header = json.loads(raw.tobytes())
    except ValueError as err:
        raise ArtifactError(f"{path}: {HEADER} is not JSON ({one_line(err)})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: {HEADER} is not a JSON object")
    return header


def read_npz(path: str | os.PathLike, names: Collection[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return (arrays ``names``, JSON header) of an .npz written by write_npz; never unpickles.

    ArtifactError (one line naming the file) for a file that is not such an archive, has
    other members, is too large uncompressed, or holds object arrays.
    """
    path = Path(path)
    refuse_pickle(path)
    try:
        with _open_npz(path, names) as archive:
            return {name: _read_member(archive, name) for name in names}, _header(archive, path)
    except ArtifactError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as err:
        raise ArtifactError(f"{path}: cannot read model arrays ({one_line(err)})") from None


def read_npz_header(path: str | os.PathLike) -> dict[str, Any]:
    """Return the JSON header of an .npz written by write_npz (the arrays are not read)."""
    path = Path(path)
    refuse_pickle(path)
    try:
        with _open_npz(path, None) as archive:
            if f"{HEADER}.npy" not in archive.namelist():
                raise ArtifactError(f"{path}: no {HEADER} member")
            return _header(archive, path)
    except ArtifactError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as err:
        raise ArtifactError(f"{path}: cannot read model arrays ({one_line(err)})") from None
