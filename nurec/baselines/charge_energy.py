"""Energy from charge: a calibrated total-charge estimator, the classical energy anchor.

Light yield is proportional to deposited energy (nurec.physics.light: 1e5 photons/GeV),
so log10 E is close to linear in log10 Q_total. The calibration is a quadratic
polynomial log10 E = c0 + c1 x + c2 x², x = log10 Q (cleaned hits, pe), fitted by least
squares on simulated events; it is stored as plain JSON coefficients.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd

from nurec.baselines.artifacts import (
    TRAINING_COMMAND,
    ArtifactError,
    claim_artifact,
    read_json_object,
)
from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import (
    detector_setup,
    finish,
    start_predictions,
    trained_info,
    usable_hits,
)
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import DetectorRef, MethodInfo, trained_for_record
from nurec.ragged import RaggedEvents

ARTIFACT = "charge_energy"
POLY_DEGREE = 2


def total_charge_pe(flat: RaggedEvents) -> np.ndarray:
    """Return each event's summed charge [pe] of its (already cleaned) hits."""
    return flat.segment_sum(np.where(np.isfinite(flat["charge"]), flat["charge"], 0.0))


class ChargeEnergy:
    """Calibrated total-charge energy estimator with fit/predict, as a registry method."""

    name = "charge-energy"
    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, model: str | os.PathLike | None = None,
                 trained: bool = True):
        """``model``: a calibration JSON written by save(); default: the shipped one.

        Raises DetectorMismatch before loading if the calibration is for another detector.
        """
        self.setup = detector_setup(detector)
        self.coefficients: np.ndarray | None = None
        self.valid_log10_charge: tuple[float, float] = (-np.inf, np.inf)
        path = claim_artifact(self, ARTIFACT, model, trained, self.setup.geometry)
        if path is not None:
            self.load(path)

    def describe(self) -> MethodInfo:
        """Return what the estimator is and the detectors its calibration is valid for."""
        return trained_info(self, ("energy",), self.trained_for, TRAINING_COMMAND)

    def log10_charge(self, events: ak.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return (log10 total cleaned charge per event, failure reasons)."""
        hits, reasons = usable_hits(events)
        hits = clean_hits(hits, self.setup.medium.name)
        with np.errstate(divide="ignore"):
            x = np.log10(total_charge_pe(hits))
        return np.where(reasons == "", x, np.nan), reasons

    def fit(self, events: ak.Array, target: str = "energy") -> ChargeEnergy:
        """Fit the calibration to ``events.truth[target]`` [GeV]; return self."""
        x, reasons = self.log10_charge(events)
        y = np.log10(ak.to_numpy(events.truth[target]).astype(float))
        ok = np.isfinite(x) & np.isfinite(y)
        self.coefficients = np.polynomial.polynomial.polyfit(x[ok], y[ok], POLY_DEGREE)
        self.valid_log10_charge = (float(x[ok].min()), float(x[ok].max()))
        energies = 10.0 ** y[ok]
        self.trained_for = trained_for_record(self.setup.geometry, (float(energies.min()), float(energies.max())))
        return self

    def predict_log10_energy(self, events: ak.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return (log10 E [GeV] per event, failure reasons)."""
        if self.coefficients is None:
            raise ValueError("charge-energy: not calibrated; call fit() or pass model=PATH")
        x, reasons = self.log10_charge(events)
        # Outside the training range the quadratic is extrapolated linearly from the edge.
        lo, hi = self.valid_log10_charge
        xc = np.clip(x, lo, hi)
        slope = np.polynomial.polynomial.polyval(xc, np.polynomial.polynomial.polyder(self.coefficients))
        y = np.polynomial.polynomial.polyval(xc, self.coefficients) + slope * (x - xc)
        return y, reasons

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return one prediction row per event with ``energy`` [GeV] and ``log10_charge_pe``."""
        y, reasons = self.predict_log10_energy(events)
        table = start_predictions(events, self.name, reasons)
        table["energy"] = 10.0**y
        table["log10_charge_pe"], _ = self.log10_charge(events)
        return finish(table)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as JSON; return the path."""
        path = Path(path)
        path.write_text(json.dumps({
            "method": self.name, "detector": DetectorRef.of(self.setup.geometry).to_dict(),
            "model": "log10 E = polyval(log10 Q_total_cleaned_pe, coefficients) (numpy order, c0 first)",
            "coefficients": [float(c) for c in self.coefficients],
            "valid_log10_charge": list(self.valid_log10_charge),
        }, indent=2))
        return path

    def load(self, path: str | os.PathLike) -> ChargeEnergy:
        """Read a calibration written by save(); return self. ArtifactError (one line naming the file) if invalid."""
        data = read_json_object(path, "charge calibration")
        coefficients, valid = data.get("coefficients"), data.get("valid_log10_charge")
        if not _finite_numbers(coefficients, POLY_DEGREE + 1):
            raise ArtifactError(f"{path}: coefficients must be {POLY_DEGREE + 1} finite numbers")
        if not _finite_numbers(valid, 2) or not valid[0] < valid[1]:
            raise ArtifactError(f"{path}: valid_log10_charge must be two finite numbers, low < high")
        self.coefficients = np.asarray(coefficients, dtype=float)
        self.valid_log10_charge = (float(valid[0]), float(valid[1]))
        return self


def _finite_numbers(values: object, count: int) -> bool:
    return (isinstance(values, list) and len(values) == count
            and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values))


make_charge_energy = ChargeEnergy
"""Registry factory: ChargeEnergy(detector=..., model=calibration JSON or the shipped one)."""
