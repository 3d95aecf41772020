"""Dataset integrity: chunk checksums in dataset.json, its schema, and chunk paths kept inside the dataset.

The damage is what a probe of the readers found read silently (4 KB of garbage inside a
chunk changed thousands of hit times while ``inspect`` and ``reconstruct`` exited 0), plus
truncated and missing chunks, malformed manifests and paths that leave the directory.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from nurec.cli import main
from nurec.io.parquet import DatasetError, iter_dataset, read_dataset, read_metadata
from nurec.io.predictions import read_predictions
from nurec.parallel import ParallelOptions
from sim.config import SimulationConfig
from sim.runner import run_simulation

CONFIG = SimulationConfig(detector="icecube-mini", n_events=40, chunk_events=20, energy_min_gev=1e3,
                          energy_max_gev=1e5, seed=11)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "pristine"
    run_simulation(CONFIG, out, ParallelOptions(workers=0, progress=False))
    return out


@pytest.fixture
def dataset(pristine, tmp_path) -> Path:
    """A fresh copy of the simulated dataset, for a test to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


def manifest_of(path: Path) -> dict:
    return json.loads((path / "dataset.json").read_text())


def write_manifest(path: Path, manifest) -> None:
    (path / "dataset.json").write_text(json.dumps(manifest) if not isinstance(manifest, str) else manifest)


def overwrite_bytes(path: Path, offset: int, n_bytes: int, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + n_bytes] = np.random.default_rng(seed).bytes(n_bytes)
    path.write_bytes(bytes(data))


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if "warning:" not in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_manifest_records_each_chunks_sha256_and_size(pristine):
    import hashlib

    chunks = manifest_of(pristine)["chunks"]
    assert len(chunks) == 2
    for chunk in chunks:
        data = (pristine / chunk["file"]).read_bytes()
        assert chunk["sha256"] == hashlib.sha256(data).hexdigest() and chunk["bytes"] == len(data)
    assert manifest_of(pristine)["format_version"] == 2


def test_4kb_of_garbage_in_a_chunk_is_an_error_naming_it_before_its_events_are_used(dataset):
    chunk = dataset / "part-00001.parquet"
    overwrite_bytes(chunk, chunk.stat().st_size // 2, 4096)
    chunks = iter_dataset(dataset)
    assert len(next(chunks)) == 20  # the intact first chunk is still read
    with pytest.raises(DatasetError, match=r"chunk part-00001\.parquet is corrupted: sha256") as caught:
        next(chunks)
    assert str(dataset) in str(caught.value) and "\n" not in str(caught.value)


def test_damage_that_parquet_decodes_without_error_is_caught(dataset):
    chunk = dataset / "part-00001.parquet"
    original, intact = chunk.read_bytes(), ak.to_list(ak.from_parquet(chunk))
    for offset in range(512, len(original) - 64, 256):  # find 64 garbage bytes that decode to other events
        overwrite_bytes(chunk, offset, 64)
        try:
            silent = ak.to_list(ak.from_parquet(chunk)) != intact
        except Exception:  # noqa: BLE001 - pyarrow caught this one itself
            silent = False
        if silent:
            break
        chunk.write_bytes(original)
    else:
        pytest.skip("this pyarrow detects every trial damage itself")
    with pytest.raises(DatasetError, match=r"chunk part-00001\.parquet is corrupted"):
        read_dataset(dataset)


def test_inspect_and_reconstruct_of_a_corrupted_chunk_exit_non_zero_naming_it(dataset, tmp_path, capsys):
    overwrite_bytes(dataset / "part-00000.parquet", 3000, 4096)
    code, _, err = run_cli(["inspect", dataset], capsys)
    assert code == 1 and "part-00000.parquet is corrupted" in one_line_error(err)
    out = tmp_path / "pred.parquet"
    code, _, err = run_cli(["reconstruct", "--method", "linefit", "--data", dataset, "--out", out, "--quiet"], capsys)
    assert code == 1 and "part-00000.parquet is corrupted" in one_line_error(err)
    assert not out.exists()
    # chunk by chunk (Dask's path, here in-process): the worker checks the chunk it reads
    out_dir = tmp_path / "pred_dir"
    code, _, err = run_cli(["reconstruct", "--method", "linefit", "--data", dataset, "--out", out_dir,
                            "--workers", "0", "--quiet"], capsys)
    assert code == 1 and "part-00000.parquet is corrupted" in one_line_error(err)
    assert not (out_dir / "predictions.json").exists()


def test_truncated_chunk_is_reported_without_parsing_it(dataset, capsys):
    chunk = dataset / "part-00001.parquet"
    chunk.write_bytes(chunk.read_bytes()[:-1000])
    with pytest.raises(DatasetError, match=r"chunk part-00001\.parquet is truncated: \d+ bytes, the manifest records"):
        read_dataset(dataset)
    code, _, err = run_cli(["inspect", dataset], capsys)
    assert code == 1 and "part-00001.parquet is truncated" in one_line_error(err)


def test_inspect_verify_reports_every_files_status(dataset, capsys):
    code, out, _ = run_cli(["inspect", dataset, "--verify"], capsys)
    assert code == 0
    assert [line.split() for line in out.splitlines()[1:]] == [["part-00000.parquet", "ok"],
                                                               ["part-00001.parquet", "ok"]]
    overwrite_bytes(dataset / "part-00000.parquet", 3000, 4096)
    (dataset / "part-00001.parquet").unlink()
    code, out, err = run_cli(["inspect", dataset, "--verify", "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    statuses = {f["file"]: f["status"] for f in report["files"]}
    assert statuses["part-00000.parquet"].startswith("corrupted: sha256")
    assert statuses["part-00001.parquet"] == "missing"
    assert "2 of 2 files failed verification" in one_line_error(err)


def test_missing_chunk_is_a_one_line_error(dataset, capsys):
    (dataset / "part-00001.parquet").unlink()
    code, _, err = run_cli(["inspect", dataset], capsys)
    assert code == 1 and "part-00001.parquet" in one_line_error(err) and "missing" in err
    code, out, _ = run_cli(["inspect", dataset, "--verify"], capsys)
    assert code == 1 and "part-00001.parquet  missing" in out


def _set(manifest: dict, key: str, value) -> dict:
    target = manifest
    *parents, last = key.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    index = int(last) if isinstance(target, list) else last
    if value is _DELETE:
        del target[index]
    else:
        target[index] = value
    return manifest


_DELETE = object()


@pytest.mark.parametrize("key, value, message", [
    ("format_version", _DELETE, "missing key 'format_version'"),
    ("chunks", _DELETE, "missing key 'chunks'"),
    ("metadata", _DELETE, "missing key 'metadata'"),
    ("chunks.0.sha256", _DELETE, "missing key 'chunks[0].sha256'"),
    ("format_version", "2", "'format_version' must be an integer, got a string"),
    ("format_version", 3, "'format_version' is 3: written by a newer nurec"),
    ("format_version", 0, "'format_version' is 0, not a known version"),
    ("format", "nurec-predictions", "'format' is 'nurec-predictions'"),
    ("n_events", True, "'n_events' must be an integer, got a boolean"),
    ("n_events", 41, "'n_events' is 41 but the chunks hold 40 events"),
    ("chunks", {"file": "part-00000.parquet"}, "'chunks' must be a list, got an object"),
    ("chunks.1", "part-00001.parquet", "'chunks[1]' must be an object, got a string"),
    ("chunks.0.events", -1, "'chunks[0].events' must be 0 or more"),
    ("chunks.0.file", None, "'chunks[0].file' must be a string, got null"),
    ("chunks.1.file", "part-00000.parquet", "'chunks[1].file' 'part-00000.parquet' is listed twice"),
    ("chunks.0.sha256", "abc", "'chunks[0].sha256' must be 64 lower-case hex digits"),
    ("chunks.0.bytes", 1.5, "'chunks[0].bytes' must be an integer, got a number"),
    ("metadata", [], "'metadata' must be an object, got a list"),
])
def test_malformed_manifest_is_a_one_line_error_naming_the_key(dataset, capsys, key, value, message):
    write_manifest(dataset, _set(manifest_of(dataset), key, value))
    with pytest.raises(DatasetError) as caught:
        read_dataset(dataset)
    assert message in str(caught.value) and "dataset.json" in str(caught.value)
    code, _, err = run_cli(["inspect", dataset], capsys)
    assert code == 1 and message in one_line_error(err)


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe not utf-8", "not valid JSON (not UTF-8 text at byte 0)"),
    (b"[1, 2, 3]", "must be a JSON object, got a list"),
    (b"null", "must be a JSON object, got null"),
    (b"[" * 100_000, "not valid JSON"),
])
def test_manifest_that_is_not_a_json_object_is_a_one_line_error(dataset, capsys, text, message):
    (dataset / "dataset.json").write_bytes(text)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dataset(dataset)
    code, _, err = run_cli(["reconstruct", "--method", "linefit", "--data", dataset, "--out",
                            dataset.parent / "p.parquet", "--quiet"], capsys)
    assert code == 1 and message in one_line_error(err)


def _outside_copy(dataset: Path) -> Path:
    """A valid chunk file outside the dataset directory (what an escaping path would read)."""
    outside = dataset.parent / "elsewhere"
    outside.mkdir()
    return Path(shutil.copy(dataset / "part-00000.parquet", outside / "part-00000.parquet"))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked_dir", "symlink_loop"])
def test_chunk_paths_must_stay_inside_the_dataset(dataset, capsys, how):
    outside = _outside_copy(dataset)
    manifest = manifest_of(dataset)
    if how == "dotdot":
        manifest["chunks"][0]["file"] = "../elsewhere/part-00000.parquet"
    elif how == "absolute":
        manifest["chunks"][0]["file"] = str(outside)
    elif how == "symlink":
        (dataset / "part-00000.parquet").unlink()
        (dataset / "part-00000.parquet").symlink_to(outside)
    elif how == "symlinked_dir":
        (dataset / "sub").symlink_to(outside.parent, target_is_directory=True)
        manifest["chunks"][0]["file"] = "sub/part-00000.parquet"
    else:
        (dataset / "part-00000.parquet").unlink()
        (dataset / "part-00000.parquet").symlink_to("loop.parquet")
        (dataset / "loop.parquet").symlink_to("part-00000.parquet")
    write_manifest(dataset, manifest)
    with pytest.raises(DatasetError, match=r"'chunks\[0\]\.file'") as caught:
        read_dataset(dataset)
    assert {"dotdot": "contains '..'", "absolute": "absolute path", "symlink": "outside the directory",
            "symlinked_dir": "outside the directory", "symlink_loop": "cannot be resolved"}[how] in str(caught.value)
    code, _, err = run_cli(["inspect", dataset], capsys)
    assert code == 1 and "'chunks[0].file'" in one_line_error(err)


def test_a_symlink_that_stays_inside_the_dataset_is_fine(dataset):
    (dataset / "kept").mkdir()
    (dataset / "part-00000.parquet").rename(dataset / "kept" / "part-00000.parquet")
    (dataset / "part-00000.parquet").symlink_to(Path("kept") / "part-00000.parquet")
    assert len(read_dataset(dataset)) == 40


def test_relative_geometry_name_must_stay_inside_the_dataset(dataset):
    manifest = manifest_of(dataset)
    manifest["metadata"]["detector"]["name"] = "../elsewhere/geometry.parquet"
    write_manifest(dataset, manifest)
    with pytest.raises(DatasetError, match=r"'metadata\.detector\.name' '\.\./elsewhere/geometry\.parquet' contains"):
        read_metadata(dataset)


def test_chunk_with_other_event_count_than_recorded_is_refused(dataset):
    # A v1 manifest (no checksums) whose chunk file was swapped for another chunk's file
    manifest = manifest_of(dataset)
    manifest["format_version"] = 1
    for chunk in manifest["chunks"]:
        del chunk["sha256"], chunk["bytes"]
    manifest["chunks"][0]["events"], manifest["chunks"][1]["events"] = 25, 15
    write_manifest(dataset, manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match=r"chunk part-00000\.parquet holds 20 events, dataset\.json records 25"):
            read_dataset(dataset)


def test_dataset_written_before_checksums_reads_with_one_warning_naming_it(dataset, capsys):
    manifest = manifest_of(dataset)
    manifest["format_version"] = 1
    del manifest["nurec_version"]
    for chunk in manifest["chunks"]:
        del chunk["sha256"], chunk["bytes"]
    write_manifest(dataset, manifest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(read_dataset(dataset)) == 40
        read_metadata(dataset)
    messages = [str(w.message) for w in caught if "checksums" in str(w.message)]
    assert len(messages) == 1 and str(dataset) in messages[0] and "format_version 1" in messages[0]
    code, out, err = run_cli(["inspect", dataset], capsys)
    assert code == 0 and "checksums      none (format_version 1, written before" in out
    code, out, _ = run_cli(["inspect", dataset, "--verify"], capsys)
    assert code == 0 and "part-00000.parquet  unverified" in out


def test_inspect_says_the_chunks_were_verified(pristine, capsys):
    code, out, _ = run_cli(["inspect", pristine], capsys)
    assert code == 0 and "checksums      sha256 of 2 chunks verified" in out


def test_prediction_parts_are_checked_against_predictions_json(pristine, tmp_path, capsys):
    out_dir = tmp_path / "pred"
    code, _, _ = run_cli(["reconstruct", "--method", "linefit", "--data", pristine, "--out", out_dir,
                          "--workers", "0", "--quiet"], capsys)
    assert code == 0
    manifest = json.loads((out_dir / "predictions.json").read_text())
    assert all(len(c["sha256"]) == 64 and c["bytes"] > 0 for c in manifest["chunks"])
    assert len(read_predictions(out_dir)) == 40
    part = out_dir / "part-00001.parquet"
    overwrite_bytes(part, part.stat().st_size // 2, 64)
    with pytest.raises(ValueError, match=r"part file part-00001\.parquet is corrupted"):
        read_predictions(out_dir)
    manifest["chunks"][1]["file"] = "../pred_elsewhere.parquet"
    shutil.copy(out_dir / "part-00000.parquet", tmp_path / "pred_elsewhere.parquet")
    (out_dir / "predictions.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"'chunks\[1\]\.file' '\.\./pred_elsewhere\.parquet' contains '\.\.'"):
        read_predictions(out_dir)


def test_simulation_resume_simulates_a_damaged_dataset_again(tmp_path):
    from sim.pipeline import simulate_dataset

    out = tmp_path / "split"
    said: list[str] = []
    assert simulate_dataset(CONFIG, out, said.append) == "done"
    events = ak.to_list(read_dataset(out))
    assert simulate_dataset(CONFIG, out, said.append) == "present"
    overwrite_bytes(out / "part-00001.parquet", 2000, 4096)
    said.clear()
    assert simulate_dataset(CONFIG, out, said.append) == "done"
    assert any("part-00001.parquet is corrupted" in line and "simulating it again" in line for line in said)
    assert ak.to_list(read_dataset(out)) == events  # the same seeds: the same events, now intact


def test_converted_dataset_records_and_checks_its_other_files(tmp_path):
    km3net_testdata = pytest.importorskip("km3net_testdata")
    pytest.importorskip("uproot")
    from nurec.io.sources import (
        EVENT_KEYS_FILE,
        GEOMETRY_FILE,
        attach_source_keys,
        convert_source,
        reference_filename,
    )

    v92 = km3net_testdata.data_path(
        "offline/KM3NeT_00000049_00011291.mc.gsg_neutrinos.km3sim_sirene_merged.jterbr."
        "jppmuon_jppshower_static.offline.v9.2.sample.root")
    out = tmp_path / "v92"
    convert_source(v92, out, progress=False)
    reference = reference_filename("km3net-jmuon")
    assert set(manifest_of(out)["files"]) == {EVENT_KEYS_FILE, GEOMETRY_FILE, reference}
    predictions = read_predictions(out / reference)
    assert len(attach_source_keys(predictions, out)) == len(predictions)
    for name in (EVENT_KEYS_FILE, GEOMETRY_FILE, reference):
        damaged = Path(shutil.copytree(out, tmp_path / f"damaged-{name}"))
        overwrite_bytes(damaged / name, 100, 16)
        with pytest.raises(DatasetError, match=rf"{name} is corrupted"):
            if name == GEOMETRY_FILE:
                read_metadata(damaged)
            elif name == EVENT_KEYS_FILE:
                attach_source_keys(predictions, damaged)
            else:
                read_predictions(damaged / name)
