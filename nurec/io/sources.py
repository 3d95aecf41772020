"""Open any supported event source as a stream of nurec event chunks, or convert it to a dataset.

Every reader of a foreign format plugs in here, so ``nurec reconstruct``, ``nurec convert``
and the evaluation accept all of them the same way:

    nurec              a nurec dataset directory (``dataset.json`` + Parquet chunks)
    km3net-offline     KM3NeT offline-format ROOT file (``nurec.io.km3net``)
    graphnet-sqlite    GraphNeT SQLite database (``nurec.io.graphnet``)
    graphnet-parquet   GraphNeT Parquet: a ``merged/`` directory or one nested-record file
    kaggle             IceCube Kaggle layout: batch Parquet + sensor_geometry.csv + meta

Converted real-data events carry an extra record field ``source`` with the source's own
event keys (``event_no``; KM3NeT ``run_id``/``frame_index``/``trigger_counter``; Kaggle
``batch_id``/``event_id``): ``source_keys_table`` turns it into a table to join predictions
(keyed by ``event_id``) back onto the original files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import awkward as ak
import pandas as pd
import pyarrow.parquet as pq

from nurec.io.parquet import MANIFEST, iter_dataset, read_metadata, verify_dataset_file
from nurec.io.reader import SourceError

if TYPE_CHECKING:
    from nurec.io.km3net import FileDetector


def _parquet_columns(path: Path) -> set[str]:
    try:
        return set(pq.read_schema(path).names)
    except Exception as err:  # pyarrow raises several types for non-Parquet files
        raise SourceError(f"{path}: cannot read Parquet schema ({err})") from err


def detect_format(path: str | os.PathLike) -> str:
    """Return the source format name of ``path`` ("nurec" for nurec datasets)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / MANIFEST).exists():
            return "nurec"
        if (path / "sensor_geometry.csv").exists() or any(path.glob("*_meta.parquet")):
            return "kaggle"
        if (path / "merged").is_dir() or any(p.is_dir() and any(p.glob("*.parquet")) for p in path.iterdir()):
            return "graphnet-parquet"
    elif path.exists():
        if suffix == ".root":
            return "km3net-offline"
        if suffix in (".db", ".sqlite", ".sqlite3"):
            return "graphnet-sqlite"
        if suffix in (".parquet", ".pq"):
            columns = _parquet_columns(path)
            if {"sensor_id", "time", "charge"} <= columns:
                return "kaggle"
            return "graphnet-parquet"
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    raise SourceError(
        f"{path}: cannot tell the data format; pass it explicitly (known: {', '.join(SOURCE_FORMATS)})"
    )


def iter_events(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> Iterator[ak.Array]:
    """Yield chunks of events in the nurec schema from a source of format ``fmt``.

    ``options`` go to the format's reader (e.g. ``detx=``, ``triggered_only=`` for
    km3net-offline; ``pulses=``, ``truth=`` for GraphNeT; ``meta=``, ``geometry=`` for kaggle).
    """
    fmt = fmt or detect_format(path)
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown source format '{fmt}' (known: {', '.join(SOURCE_FORMATS)})")
    return SOURCE_FORMATS[fmt](path, **options)


SOURCE_STAND_IN_DETECTOR = {"km3net-offline": "km3net-orca", "graphnet-sqlite": "icecube86",
                            "graphnet-parquet": "icecube86", "kaggle": "icecube86"}
SOURCE_MEDIUM = {"km3net-offline": "water", "graphnet-sqlite": "ice", "graphnet-parquet": "ice", "kaggle": "ice"}


def source_metadata(path: str | os.PathLike, fmt: str | None = None) -> dict[str, Any]:
    """Return dataset metadata of a source (detector, counts, ...), empty if it has none."""
    fmt = fmt or detect_format(path)
    if fmt == "nurec":
        return read_metadata(path)
    # Events read straight from an experiment's file: a built-in detector of its family stands in
    # for the medium and sensor response (as nurec convert records it).
    return {"source": fmt, "path": str(path), "detector": {"name": SOURCE_STAND_IN_DETECTOR[fmt], "stand_in": True}}


def source_keys_table(events: ak.Array) -> pd.DataFrame:
    """Return a table of ``event_id``, ``run_id`` and the source's own event keys, one row per event.

    Join predictions back onto the original files with
    ``predictions.merge(source_keys_table(events), on="event_id")``.
    """
    table = pd.DataFrame({
        "event_id": ak.to_numpy(events.event_id),
        "run_id": ak.to_numpy(events.run_id),
    })
    if "source" in events.fields:
        for name in events.source.fields:
            table[name] = ak.to_numpy(events.source[name])
    return table


def attach_source_keys(predictions: pd.DataFrame, dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """Return predictions with the source's own event keys of a converted dataset joined on event_id.

    The result can be written with ``nurec.io.predictions.write_predictions`` (Parquet or
    CSV) and joined by users on ``event_no`` / ``run_id, frame_index, trigger_counter`` /
    ``batch_id, event_id``.
    """
    keys_path = Path(dataset_dir) / EVENT_KEYS_FILE
    if not keys_path.exists():
        raise FileNotFoundError(f"{keys_path}: no event keys (not a dataset written by nurec convert)")
    verify_dataset_file(keys_path)
    keys = pd.read_parquet(keys_path)
    extra = [c for c in keys.columns if c == "event_id" or c not in predictions.columns]
    return predictions.merge(keys[extra], on="event_id", how="left", validate="many_to_one")


EVENT_KEYS_FILE = "event_keys.parquet"


def reference_filename(method: str) -> str:
    """Return the file name, inside a converted dataset, of a source's own reconstruction."""
    return f"reference_{method}.parquet"


def convert_source(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    fmt: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Convert a source into a nurec dataset directory, streaming; return a summary dict.

    Next to the Parquet chunks it writes ``event_keys.parquet`` (``source_keys_table``) and,
    for KM3NeT files, the file's own reconstruction as ``reference_km3net-jmuon.parquet`` and,
    without a detx file, the geometry the file's hits show as ``geometry.parquet``; the
    manifest records their checksums too. On any error nothing is left that looks like a
    complete dataset.
    """
    from tqdm import tqdm

    from nurec.io.parquet import DatasetWriter
    from nurec.io.predictions import write_predictions

    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in SOURCE_FORMATS or fmt == "nurec":
        raise ValueError(f"cannot convert format '{fmt}' (known: {', '.join(f for f in SOURCE_FORMATS if f != 'nurec')})")
    out_dir = Path(out_dir)
    metadata: dict[str, Any] = {
        "source": fmt,
        "source_path": str(path.resolve()),
        "source_options": {k: str(v) if isinstance(v, os.PathLike) else v for k, v in options.items()},
        "medium": SOURCE_MEDIUM[fmt],
    }
    seen = None
    if fmt == "km3net-offline":
        from nurec.io.km3net import (
            JMUON_METHOD_NAME,
            FileDetector,
            KM3NeTOptions,
            iter_km3net_chunks,
        )

        # The chunk files carry what is known before reading: the detx record, or the name of
        # the geometry table built from the hits (its counts come with the manifest).
        metadata["detector"] = _detx_record(options["detx"]) if options.get("detx") is not None \
            else {"name": GEOMETRY_FILE, "from_file": True}
        seen = FileDetector(path)
        chunks = iter_km3net_chunks(path, KM3NeTOptions(**options), seen)
        reference_method: str | None = JMUON_METHOD_NAME
    else:
        chunks = ((events, None) for events in iter_events(path, fmt, **options))
        reference_method = None
    # Without a detector file, a built-in detector of the same family stands in for the
    # medium and sensor response (methods read hit positions from the events themselves).
    metadata.setdefault("detector", {"name": SOURCE_STAND_IN_DETECTOR[fmt], "stand_in": True})
    written: list[Path] = []
    references, keys = [], []
    n_events = n_hits = 0
    bar = tqdm(desc=f"convert {path.name}", unit=" events", disable=None if progress else True, leave=False)
    try:
        with DatasetWriter(out_dir, metadata, overwrite=overwrite) as writer:
            for events, reference in chunks:
                if n_events and len(events) == 0:
                    continue
                writer.write(events)
                keys.append(source_keys_table(events))
                if reference is not None:
                    references.append(reference)
                n_events += len(events)
                n_hits += int(ak.sum(ak.num(events.hits, axis=1)))
                bar.update(len(events))
            if seen is not None:
                metadata["detector"] = _km3net_detector_record(metadata["detector"], seen, out_dir, written)
            writer.metadata = {**metadata, "n_events": n_events, "n_hits": n_hits}
            written.append(out_dir / EVENT_KEYS_FILE)
            pd.concat(keys, ignore_index=True).to_parquet(written[-1], index=False)
            if reference_method is not None:
                written.append(out_dir / reference_filename(reference_method))
                write_predictions(pd.concat(references, ignore_index=True), written[-1],
                                  {"method": reference_method, "version": "as-stored",  # the file's own fit
                                   "source": str(path.resolve())})
            for file in written:  # their digests go into the manifest, checked where they are read
                writer.add_file(file.name)
    except BaseException:
        for file in written:
            file.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return {
        "format": fmt, "out": str(out_dir), "n_events": n_events, "n_hits": n_hits,
        "reference": str(written[-1]) if reference_method is not None else None,
    }


GEOMETRY_FILE = "geometry.parquet"
"""The geometry a converted KM3NeT file's hits show, inside the dataset directory."""


def _detx_record(detx: str | os.PathLike) -> dict[str, Any]:
    """Return the detector record of a detx file; "name" is what get_geometry resolves: the detx path."""
    from nurec.geometry import load_detx

    detx_path = str(Path(detx).resolve())
    return {**load_detx(detx_path).describe(), "name": detx_path}


def _km3net_detector_record(record: dict[str, Any], seen: FileDetector, out_dir: Path,
                            written: list[Path]) -> dict[str, Any]:
    """Return the final detector record of a converted KM3NeT file (``seen``: its ``FileDetector``).

    With a detx file: its record plus the file's det_id. Without: the geometry of the PMTs
    the hits showed is written to ``out_dir/geometry.parquet`` (appended to ``written``) and
    named relative to the dataset directory, so the dataset can be moved; ``read_metadata``
    returns it as an absolute path. Only PMTs with at least one hit are in it
    (``n_sensors_seen``). A file without hits keeps the stand-in detector.
    """
    from nurec.geometry import write_geometry_table

    if not record.get("from_file"):
        return {**record, "det_id": seen.det_id}
    geometry = seen.geometry()
    if geometry is None:
        return {"name": SOURCE_STAND_IN_DETECTOR["km3net-offline"], "stand_in": True, "det_id": seen.det_id}
    written.append(write_geometry_table(geometry, out_dir / GEOMETRY_FILE))
    label = f"KM3NeT det_id {seen.det_id}" if seen.det_id is not None else f"KM3NeT file {seen.path.name}"
    return {**geometry.describe(), "name": GEOMETRY_FILE, "det_id": seen.det_id, "label": label,
            "from_file": True, "n_sensors_seen": geometry.n_sensors}


def _km3net(path, **options):
    from nurec.io.km3net import iter_km3net_offline

    return iter_km3net_offline(path, **options)


def _graphnet_sqlite(path, **options):
    from nurec.io.graphnet import iter_graphnet_sqlite

    return iter_graphnet_sqlite(path, **options)


def _graphnet_parquet(path, **options):
    from nurec.io.graphnet import iter_graphnet_parquet

    return iter_graphnet_parquet(path, **options)


def _kaggle(path, **options):
    from nurec.io.kaggle import iter_kaggle

    return iter_kaggle(path, **options)


SOURCE_FORMATS: dict[str, Callable[..., Iterator[ak.Array]]] = {
    "nurec": lambda path, **options: iter_dataset(path, **options),
    "km3net-offline": _km3net,
    "graphnet-sqlite": _graphnet_sqlite,
    "graphnet-parquet": _graphnet_parquet,
    "kaggle": _kaggle,
}
