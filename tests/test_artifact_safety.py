"""No model file runs code when loaded (issue 14): every loader against crafted files.

Each malicious file carries a pickle ``__reduce__`` payload that would create a marker
file; a test passes only if the loader refuses the file with one line naming it and the
marker does not exist. ``test_the_payload_runs_when_unpickled`` shows the payload is live.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from nurec.baselines import artifacts
from nurec.baselines.artifacts import (
    PICKLE_SUFFIXES,
    SHIPPED_SHA256,
    TRAINED_DIR,
    ArtifactError,
    read_card,
)
from nurec.baselines.bdt_uncertainty import FEATURES, BdtUncertainty
from nurec.baselines.cnn_energy import CnnEnergy
from nurec.baselines.trees import ARRAY_KINDS, Forests
from nurec.io.integrity import file_digest
from nurec.methods.registry import build_method
from nurec.models import reconstruct
from nurec.models.reconstruct import DEFAULT_MODEL_FILE, load_gnn
from nurec.models.serialize import load_payload

REPO = Path(__file__).resolve().parents[1]
ICECUBE86 = {"detectors": [{"name": "icecube86", "hash": "0d6f578cfb1cf9fd"}], "energy_range_gev": [1e3, 1e6]}


class Payload:
    """Unpickling this calls exec, which writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('ran')",))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def assert_refused(err: BaseException, path: Path, marker: Path) -> None:
    message = str(err)
    assert "\n" not in message, message
    assert str(path) in message, message
    assert "weights_only=False" not in message  # never advise the unsafe load
    assert not marker.exists(), "the payload ran"


def malicious_folder(folder: Path, file_name: str, data: bytes, trained_for: dict = ICECUBE86) -> Path:
    """The attack of issue 14: a model file plus a card beside it that vouches for its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file_name).write_bytes(data)
    entry = {"file": file_name, "sha256": hashlib.sha256(data).hexdigest()}
    card = {"command": "x", "trained_for": trained_for, "files": {"bdt_uncertainty": entry, "cnn_energy": entry,
                                                                  "charge_energy": entry}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder / file_name


def test_the_payload_runs_when_unpickled(marker):
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "ran"


# The BDT (.npz of tree arrays)


@pytest.mark.parametrize("file_name,encode", [
    ("bdt_uncertainty.joblib", lambda p: pickle.dumps(p)),  # refused by name, never opened
    ("model.pkl", lambda p: pickle.dumps(p)),
    ("bdt_uncertainty.npz", lambda p: pickle.dumps(p)),  # a pickle renamed
    ("bdt_uncertainty.npz", lambda p: zlib.compress(pickle.dumps(p))),  # a compressed joblib renamed
    ("bdt_uncertainty.npz", torch_bytes),  # a torch zip with a payload renamed
])
def test_bdt_refuses_pickles_even_when_a_card_vouches_for_them(tmp_path, marker, file_name, encode):
    path = malicious_folder(tmp_path / "model", file_name, encode(Payload(marker)))
    with pytest.raises(ArtifactError) as refused:
        build_method("bdt-uncertainty", model=path)
    assert_refused(refused.value, path, marker)


def _trained_bdt(seed: int = 0) -> BdtUncertainty:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, len(FEATURES)))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 3]) ** 2 + rng.normal(scale=0.1, size=len(x))
    models = [HistGradientBoostingRegressor(loss="absolute_error", max_iter=30, max_leaf_nodes=7,
                                           random_state=k).fit(x[k::2], y[k::2]) for k in range(2)]
    bdt = BdtUncertainty(trained=False)
    bdt.forests = Forests.from_sklearn(models)
    bdt.scale = 1.25
    bdt.trained_for = ICECUBE86
    bdt._sklearn = models  # for the comparisons below
    return bdt


def _tricky_rows(forests: Forests, n: int, seed: int = 1) -> np.ndarray:
    """Feature rows at, just above and just below split thresholds, with NaN and ±inf."""
    thresholds = forests.threshold[forests.feature >= 0]
    pool = np.concatenate([thresholds, np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf),
                           [np.nan, np.inf, -np.inf, 0.0]])
    return np.random.default_rng(seed).choice(pool, size=(n, forests.n_features))


def test_tree_arrays_predict_bitwise_as_sklearn_after_a_save_and_load(tmp_path):
    bdt = _trained_bdt()
    path = bdt.save(tmp_path / "bdt.npz")
    loaded = build_method("bdt-uncertainty", model=path)
    x = _tricky_rows(bdt.forests, 5000)
    expected = np.array([model.predict(x) for model in bdt._sklearn])
    np.testing.assert_array_equal(loaded.forests.predict(x), expected)  # exact, not to a tolerance
    assert loaded.scale == bdt.scale and loaded.trained_for == ICECUBE86
    assert path.read_bytes() == bdt.save(tmp_path / "again.npz").read_bytes()  # same model, same bytes


def test_shipped_bdt_predicts_what_the_joblib_model_did():
    # Log-sigma of these rows from the pre-conversion joblib model (sklearn predict, mean of the 4 folds).
    rows = np.array([
        [12, 3, 1.5, 2.0, 0.5, 0.3, 400.0, 0.2, 0.25],
        [40, 6, 2.5, 1.6, 0.1, -0.5, 800.0, -0.3, 0.29],
        [8, 2, 1.0, 3.0, 1.2, 0.9, 150.0, 0.8, 0.15],
        [120, 15, 3.8, 1.4, -0.6, -0.1, 1000.0, -0.7, 0.3],
        [25, 4, np.nan, 2.2, np.nan, 0.0, np.nan, np.nan, np.nan],
    ])
    joblib_log_sigma = [1.2986598381068046, -0.06895124301048086, 3.5871358196474747, -0.9478109798187856,
                        0.3668935975349947]
    bdt = build_method("bdt-uncertainty")
    assert bdt.scale == 1.5576681160163313
    np.testing.assert_array_equal(np.mean(bdt.forests.predict(rows), axis=0), joblib_log_sigma)


def _valid_npz(tmp_path: Path) -> tuple[dict, dict]:
    bdt = _trained_bdt()
    arrays, header = artifacts.read_npz(bdt.save(tmp_path / "valid.npz"), ARRAY_KINDS)
    return {name: array.copy() for name, array in arrays.items()}, header


def _object_array_npz(arrays: dict, header: dict, payload: Payload) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in {**arrays, "header_json": np.frombuffer(json.dumps(header).encode(), np.uint8)}.items():
            member = io.BytesIO()
            if name == "value":
                value = np.array([payload, 1.0], dtype=object)
            np.lib.format.write_array(member, value, allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


def test_bdt_refuses_an_npz_with_an_object_array(tmp_path, marker):
    arrays, header = _valid_npz(tmp_path)
    path = malicious_folder(tmp_path / "model", "bdt_uncertainty.npz",
                            _object_array_npz(arrays, header, Payload(marker)))
    with pytest.raises(ArtifactError, match="allow_pickle=False") as refused:
        build_method("bdt-uncertainty", model=path)
    assert_refused(refused.value, path, marker)


def _change(arrays: dict, header: dict, what: str) -> None:
    if what == "child-loop":
        inner = np.flatnonzero(arrays["feature"] >= 0)[1]
        arrays["left"][inner] = inner  # a walk that would never end
    elif what == "child-in-next-tree":
        arrays["right"][0] = arrays["tree_start"][1]
    elif what == "feature-out-of-range":
        arrays["feature"][0] = len(FEATURES)
    elif what == "float-feature":
        arrays["feature"] = arrays["feature"].astype(float)
    elif what == "2d-threshold":
        arrays["threshold"] = arrays["threshold"][:, None]
    elif what == "short-value":
        arrays["value"] = arrays["value"][:-1]
    elif what == "nan-leaf":
        arrays["value"][np.flatnonzero(arrays["feature"] < 0)[0]] = np.nan
    elif what == "bad-offsets":
        arrays["tree_start"][1] = arrays["tree_start"][2]
    elif what == "missing-array":
        del arrays["missing_left"]
    elif what == "other-features":
        header["features"] = list(reversed(FEATURES))
    elif what == "negative-scale":
        header["scale"] = -1.0
    elif what == "other-format":
        header["format"] = "something-else"
    elif what == "trained-for-list":
        header["trained_for"] = ["icecube86"]


@pytest.mark.parametrize("what", ["child-loop", "child-in-next-tree", "feature-out-of-range", "float-feature",
                                  "2d-threshold", "short-value", "nan-leaf", "bad-offsets", "missing-array",
                                  "other-features", "negative-scale", "other-format", "trained-for-list"])
def test_bdt_refuses_malformed_tree_files_in_one_line(tmp_path, what):
    arrays, header = _valid_npz(tmp_path)
    _change(arrays, header, what)
    path = tmp_path / "bad.npz"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in {**arrays, "header_json": np.frombuffer(json.dumps(header).encode(), np.uint8)}.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, value, allow_pickle=False)
            archive.writestr(f"{name}.npy", member.getvalue())
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ArtifactError) as refused:
        BdtUncertainty(trained=False).load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_a_user_bdt_file_without_a_card_loads_and_a_stale_card_is_caught(tmp_path):
    path = _trained_bdt().save(tmp_path / "mine.npz")
    assert build_method("bdt-uncertainty", model=path).scale == 1.25  # no card needed: the format is safe
    (tmp_path / "card.json").write_text(json.dumps({"files": {"bdt_uncertainty": {"file": "mine.npz",
                                                                                   "sha256": "0" * 64}}}))
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        build_method("bdt-uncertainty", model=path)


# The CNN (torch state_dict) and the GNN (torch payload)


def _torch_attacks(marker: Path) -> dict[str, bytes]:
    payload = Payload(marker)
    return {
        "object.pt": torch_bytes(payload),
        "nested.pt": torch_bytes({"conv.weight": torch.zeros(2), "extra": payload}),
        "legacy.pt": pickle.dumps(payload),  # the pre-zip torch format is a bare pickle
        "gnn.pt": torch_bytes({"format": "nurec-gnn", "format_version": 1, "spec_json": "{}", "state_dict": payload}),
        "renamed.joblib.pt": zlib.compress(pickle.dumps(payload)),
    }


def test_cnn_refuses_malicious_torch_files(tmp_path, marker):
    for name, data in _torch_attacks(marker).items():
        path = tmp_path / name
        path.write_bytes(data)
        # The sidecar vouches for the detector, so the file reaches the weights loader.
        path.with_suffix(".json").write_text(json.dumps({"detector": ICECUBE86["detectors"][0]}))
        with pytest.raises(ArtifactError, match="refused") as refused:
            build_method("cnn-energy", model=path)
        assert_refused(refused.value, path, marker)


def test_gnn_refuses_malicious_torch_files(tmp_path, marker):
    for name, data in _torch_attacks(marker).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match="refused") as refused:
            load_gnn(path)
        assert_refused(refused.value, path, marker)
        with pytest.raises(ValueError):  # the training checkpoint reader shares the loader
            load_payload(path)
        assert not marker.exists()


def test_cnn_refuses_weights_of_the_wrong_shape(tmp_path):
    cnn = build_method("cnn-energy")
    state = cnn.model.state_dict()
    first = next(iter(state))
    state[first] = state[first][:1]
    path = tmp_path / "cnn.pt"
    torch.save(state, path)
    with pytest.raises(ArtifactError, match=first.replace(".", r"\.")) as refused:
        CnnEnergy(trained=False).load(path)
    assert "\n" not in str(refused.value) and str(path) in str(refused.value)


def _gnn_change(payload: dict, what: str) -> None:
    if what == "spec-not-json":
        payload["spec_json"] = "{"
    elif what == "spec-a-list":
        payload["spec_json"] = "[1, 2]"
    elif what == "spec-bad-field":
        payload["spec_json"] = json.dumps({"architecture": "nope"})
    elif what == "wrong-shape":
        key = next(iter(payload["state_dict"]))
        payload["state_dict"][key] = torch.zeros(3, 3, 3)
    elif what == "missing-tensor":
        payload["state_dict"].pop(next(iter(payload["state_dict"])))
    elif what == "state-not-tensors":
        payload["state_dict"] = {"a": 1}
    elif what == "metadata-trained-for-list":
        payload["metadata_json"] = json.dumps({"trained_for": ["icecube86"]})
    elif what == "format-a-list":
        payload.clear()
        payload["format"] = ["nurec-gnn"]


@pytest.mark.parametrize("what", ["spec-not-json", "spec-a-list", "spec-bad-field", "wrong-shape", "missing-tensor",
                                  "state-not-tensors", "metadata-trained-for-list", "format-a-list"])
def test_gnn_refuses_malformed_model_files_in_one_line(tmp_path, what):
    payload = load_payload(DEFAULT_MODEL_FILE)
    _gnn_change(payload, what)
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError) as refused:
        load_gnn(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


# The charge calibration (JSON) and cards


@pytest.mark.parametrize("text", [
    "{", "[1, 2, 3]", '{"coefficients": [1, 2], "valid_log10_charge": [0, 5]}',
    '{"coefficients": ["1", 2, 3], "valid_log10_charge": [0, 5]}',
    '{"coefficients": [NaN, 2, 3], "valid_log10_charge": [0, 5]}',
    '{"coefficients": [1, 2, 3], "valid_log10_charge": [5, 0]}',
    '{"coefficients": [1, 2, 3]}',
])
def test_charge_energy_refuses_malformed_calibrations_in_one_line(tmp_path, text):
    path = tmp_path / "calibration.json"
    path.write_text(text)
    (tmp_path / "card.json").write_text(json.dumps({"trained_for": ICECUBE86}))
    with pytest.raises(ArtifactError) as refused:
        build_method("charge-energy", model=path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


@pytest.mark.parametrize("card", [
    "not json", "[]", '{"files": []}', '{"files": {"cnn_energy": {"file": "cnn_energy.pt", "sha256": 1}}}',
    '{"files": {"cnn_energy": {"file": "../cnn_energy.pt", "sha256": "00"}}}',
    '{"trained_for": ["icecube86"]}', '{"trained_for": {"detectors": "icecube86"}}',
    '{"trained_for": {"detectors": [], "energy_range_gev": [1, "x"]}}',
])
def test_malformed_cards_are_one_line_errors_naming_the_card(tmp_path, card):
    model = tmp_path / "cnn_energy.pt"
    shutil.copy(TRAINED_DIR / "cnn_energy.pt", model)
    (tmp_path / "card.json").write_text(card)
    with pytest.raises(ArtifactError) as refused:
        build_method("cnn-energy", model=model)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'card.json'}: ") and "\n" not in message


# Bundled files: hashes the package ships


def test_bundled_hashes_in_the_code_match_the_files_and_the_card():
    card = read_card()
    listed = {entry["file"]: entry["sha256"] for entry in card["files"].values()}
    assert listed == SHIPPED_SHA256
    for name, digest in SHIPPED_SHA256.items():
        assert file_digest(TRAINED_DIR / name).sha256 == digest, name
    assert hashlib.sha256(DEFAULT_MODEL_FILE.read_bytes()).hexdigest() == reconstruct.DEFAULT_MODEL_SHA256


def test_a_bundled_file_that_differs_from_the_shipped_hash_is_refused(monkeypatch):
    monkeypatch.setitem(SHIPPED_SHA256, "cnn_energy.pt", "0" * 64)
    with pytest.raises(ArtifactError, match="value nurec ships") as refused:
        build_method("cnn-energy")
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(reconstruct, "DEFAULT_MODEL_SHA256", "0" * 64)
    for model in ("default", DEFAULT_MODEL_FILE):
        with pytest.raises(ValueError, match="value nurec ships"):
            load_gnn(model)


def test_no_pickle_file_ships_in_the_package():
    shipped = [p for package in ("nurec", "sim", "services") for p in (REPO / package).rglob("*")
               if p.suffix.lower() in PICKLE_SUFFIXES]
    assert not shipped


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ast.unparse(node.func.value)
            yield owner, node.func.attr, {k.arg: ast.unparse(k.value) for k in node.keywords}, node.lineno


def test_product_code_has_no_unpickling_loader():
    forbidden_modules = {"pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal", "skops"}
    problems = []
    for package in ("nurec", "sim", "services"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = path.relative_to(REPO).as_posix()
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                problems += [f"{where}:{node.lineno}: imports {n}" for n in names
                             if n.split(".")[0] in forbidden_modules]
            for owner, attr, keywords, line in _calls(tree):
                if owner == "torch" and attr == "load" and (keywords.get("weights_only") != "True"
                                                            or where != "nurec/safe_load.py"):
                    problems.append(f"{where}:{line}: torch.load outside nurec.safe_load.read_weights")
                if owner in ("np", "numpy") and attr == "load" and keywords.get("allow_pickle") != "False":
                    problems.append(f"{where}:{line}: np.load without allow_pickle=False")
                if attr in ("read_pickle", "from_pickle") or (owner == "torch.jit" and attr == "load"):
                    problems.append(f"{where}:{line}: {owner}.{attr}")
    assert not problems, "\n".join(problems)


# Command line and server


@pytest.fixture(scope="module")
def mini_dataset(tmp_path_factory):
    from nurec.cli import main

    out = tmp_path_factory.mktemp("data") / "mini"
    assert main(["simulate", "--detector", "icecube-mini", "--events", "4", "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("file_name", ["bdt_uncertainty.joblib", "bdt_uncertainty.npz"])
def test_reconstruct_refuses_a_malicious_model_folder(mini_dataset, tmp_path, marker, capsys, file_name):
    from nurec.cli import main

    # The card even names the dataset's detector: only the loader stands between the file and exec.
    mini = {"detectors": [{"name": "icecube-mini"}], "energy_range_gev": None}
    path = malicious_folder(tmp_path / "evil", file_name, pickle.dumps(Payload(marker)), mini)
    out = tmp_path / "p.parquet"
    capsys.readouterr()
    code = main(["reconstruct", "--method", "bdt-uncertainty", "--data", str(mini_dataset), "--out", str(out),
                 "--model", str(path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("nurec reconstruct: error: ") and "\n" not in err
    assert str(path) in err and not marker.exists() and not out.exists()


@pytest.mark.parametrize("method,file_name", [("bdt-uncertainty", "bdt_uncertainty.npz"), ("gnn", "model.pt")])
def test_serve_refuses_a_malicious_model_folder(tmp_path, marker, method, file_name):
    data = (pickle.dumps(Payload(marker)) if file_name.endswith(".npz")
            else torch_bytes({"format": "nurec-gnn", "state_dict": Payload(marker)}))
    path = malicious_folder(tmp_path / "evil", file_name, data)
    # The default worker is a separate process: the refusal must still be one line, from the server.
    done = subprocess.run([sys.executable, "-m", "nurec", "serve", "--method", method, "--model", str(path),
                           "--port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    err = done.stderr.strip()
    assert done.returncode == 1, err
    last = err.splitlines()[-1]  # startup log lines may come first; the refusal is the last line
    assert last.startswith("nurec serve: error: ") and str(path) in last
    assert "Traceback" not in err and not marker.exists()
