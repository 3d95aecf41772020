"""KM3NeT detector files (``.detx``, ASCII formats v1 to v5) as nurec geometries.

A detx file lists, for every optical module (DOM), its detection unit (DU) and floor and
then its PMTs in channel order (the n-th PMT line of a module is channel n). Layout of
the versions (KM3NeT dataformat, as written by Jpp's JDetector):

    v1   header ``det_id n_modules``
         module ``dom_id du floor n_pmts``
         pmt    ``pmt_id x y z dx dy dz t0``
    v2   header ``det_id v2``, ``t_valid_from t_valid_to``, ``UTM ...``, ``n_modules``
         module and pmt lines as v1
    v3   as v2, pmt lines end with a ``status`` word
    v4   module ``dom_id du floor x y z q0 qx qy qz t0 n_pmts`` (position, orientation
         quaternion, time offset), pmt lines as v3
    v5   module ``dom_id du floor x y z q0 qx qy qz t0 status n_pmts``, pmt lines as v3

Lines starting with ``#`` are comments. Some real files break a long comment over several
lines, so lines before the version header are skipped when a ``det_id vN`` header is found.
Positions are in metres, PMT directions unit vectors, ``t0`` in ns (time calibration:
calibrated hit time = raw hit time + t0).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

_VERSION_HEADER = re.compile(r"^\s*(-?\d+)\s+[vV](\d+)\s*$")


class DetxError(ValueError):
    """A detx file cannot be parsed; the message names the file and the line."""


@dataclass(frozen=True)
class DetxDetector:
    """Everything a detx file says per PMT, one array entry per PMT, in file order."""

    path: Path
    det_id: int
    version: int
    pmt_id: np.ndarray       # int64, the file's PMT identifier
    dom_id: np.ndarray       # int64, module identifier (what hits call dom_id)
    channel_id: np.ndarray   # int32, PMT index within its module (hits' channel_id)
    du: np.ndarray           # int32, detection unit (string)
    floor: np.ndarray        # int32, floor as in the file (1 = lowest DOM of a DU)
    position: np.ndarray     # (n, 3) float64 [m]
    direction: np.ndarray    # (n, 3) float64 unit vectors
    t0: np.ndarray           # float64 [ns]

    def lookup(self, dom_id: np.ndarray, channel_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (row index, found mask) of the PMTs at (dom_id, channel_id) pairs."""
        keys = _pmt_key(self.dom_id, self.channel_id)
        order = np.argsort(keys)
        sorted_keys = keys[order]
        query = _pmt_key(np.asarray(dom_id, dtype=np.int64), np.asarray(channel_id, dtype=np.int64))
        pos = np.clip(np.searchsorted(sorted_keys, query), 0, max(len(sorted_keys) - 1, 0))
        found = sorted_keys[pos] == query if len(sorted_keys) else np.zeros(len(query), bool)
        return order[pos], found

    @cached_property
    def sensor_id(self) -> np.ndarray:
        """Return the nurec sensor ids: the PMT ids, or file order if those are not unique int32."""
        if len(np.unique(self.pmt_id)) != len(self.pmt_id) or np.abs(self.pmt_id).max(initial=0) >= 2**31:
            return np.arange(len(self.pmt_id), dtype=np.int64)
        return self.pmt_id


def _pmt_key(dom_id: np.ndarray, channel_id: np.ndarray) -> np.ndarray:
    # DOM ids are < 2^31 and channels < 2^8, so the key is unique in int64.
    return np.asarray(dom_id, dtype=np.int64) * 256 + np.asarray(channel_id, dtype=np.int64)


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise DetxError(f"{path}: cannot read detx file ({err.strerror or err})") from err
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    for index, (_, line) in enumerate(lines):
        if _VERSION_HEADER.match(line):
            return lines[index:]
    return lines


def parse_detx(path: str | os.PathLike) -> DetxDetector:
    """Return the per-PMT content of a detx file (formats v1 to v5); raise DetxError naming the line."""
    path = Path(path)
    if not path.exists():
        raise DetxError(f"{path}: no such detx file")
    stat = path.stat()
    return _parse_detx_cached(path.resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _parse_detx_cached(path: Path, mtime_ns: int, size: int) -> DetxDetector:
    lines = _data_lines(path)
    if not lines:
        raise DetxError(f"{path}: empty detx file")
    cursor = 0

    def take(what: str) -> tuple[int, list[str]]:
        nonlocal cursor
        if cursor >= len(lines):
            raise DetxError(f"{path}: file ends where {what} was expected")
        cursor += 1
        return lines[cursor - 1][0], lines[cursor - 1][1].split()

    number, header = take("the header")
    match = _VERSION_HEADER.match(" ".join(header))
    try:
        if match:
            det_id, version = int(match.group(1)), int(match.group(2))
            take("the validity period")
            take("the UTM reference")
            number, words = take("the number of modules")
            n_modules = int(words[0])
        elif len(header) == 2:
            det_id, version, n_modules = int(header[0]), 1, int(header[1])
        else:
            raise ValueError("expected 'det_id vN' or 'det_id n_modules'")
    except (ValueError, IndexError) as err:
        raise DetxError(f"{path}: line {number}: bad detx header ({err})") from err
    if version not in (1, 2, 3, 4, 5):
        raise DetxError(f"{path}: line {number}: unsupported detx version v{version} (v1-v5 are known)")

    module_words = {1: 4, 2: 4, 3: 4, 4: 12, 5: 13}[version]
    pmt_words = 8 if version <= 2 else 9
    modules: list[tuple[int, int, int, int]] = []
    pmt_lines: list[str] = []
    first_pmt_line: list[int] = []
    for _ in range(n_modules):
        number, words = take("a module line")
        try:
            if len(words) < module_words:
                raise ValueError(f"{len(words)} fields, expected {module_words}")
            dom_id, du, floor = int(words[0]), int(words[1]), int(words[2])
            n_pmts = int(words[module_words - 1])
        except ValueError as err:
            raise DetxError(f"{path}: line {number}: bad module line ({err})") from err
        if cursor + n_pmts > len(lines):
            raise DetxError(f"{path}: file ends inside the PMT list of module {dom_id}")
        modules.append((dom_id, du, floor, n_pmts))
        first_pmt_line.append(lines[cursor][0] if n_pmts else number)
        pmt_lines.extend(line for _, line in lines[cursor:cursor + n_pmts])
        cursor += n_pmts
    if not pmt_lines:
        raise DetxError(f"{path}: detx file lists no PMTs")
    try:  # parse all PMT lines at once; on failure find the offending line
        values = pd.read_csv(io.StringIO("\n".join(pmt_lines)), sep=r"\s+", header=None,
                             dtype=np.float64).to_numpy()
        if values.shape != (len(pmt_lines), pmt_words):
            raise ValueError(f"shape {values.shape}")
    except ValueError:
        for index, line in enumerate(pmt_lines):
            words = line.split()
            module = int(np.searchsorted(np.cumsum([m[3] for m in modules]), index, side="right"))
            where = f"PMT line {index - sum(m[3] for m in modules[:module])} of module {modules[module][0]}"
            if len(words) != pmt_words:
                raise DetxError(f"{path}: {where}: {len(words)} fields, expected {pmt_words}") from None
            try:
                [float(w) for w in words]
            except ValueError as err:
                raise DetxError(f"{path}: {where}: {err}") from None
        raise
    module_table = np.asarray(modules, dtype=np.int64)
    counts = module_table[:, 3]
    channel = np.arange(len(pmt_lines)) - np.repeat(np.cumsum(counts) - counts, counts)
    direction = values[:, 4:7]
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)
    return DetxDetector(
        path=path, det_id=det_id, version=version,
        pmt_id=values[:, 0].astype(np.int64), dom_id=np.repeat(module_table[:, 0], counts),
        channel_id=channel.astype(np.int32), du=np.repeat(module_table[:, 1], counts).astype(np.int32),
        floor=np.repeat(module_table[:, 2], counts).astype(np.int32), position=values[:, 1:4].copy(),
        direction=direction, t0=values[:, 7].copy(),
    )


__all__ = ["DetxDetector", "DetxError", "parse_detx"]
