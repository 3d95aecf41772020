"""BDT angular-error estimator: predicts each likelihood fit's angular error from event features.

As in IceCube's point-source samples, a gradient-boosted regressor (scikit-learn
HistGradientBoostingRegressor) is trained on simulated events to predict
log(angular error) of the likelihood track fit from event-level features (hit sensors,
charge, -log L per hit, LineFit-vs-likelihood opening angle, zenith, projected track
length, paraboloid sigma, ...). The prediction is then scaled by one factor, chosen on
out-of-fold (cross-validated) predictions, so that 68% of the training events have
their true error within ``angular_uncertainty_deg`` when each is held out.

Persistence: the fitted trees as plain numeric arrays in an .npz (nurec.baselines.trees,
read without pickle, so a model file cannot run code) with a JSON header (format,
feature names, scale, trained_for). Once fitted, the method predicts from the arrays,
bitwise what scikit-learn's ``predict`` gives, so a saved and reloaded model predicts
exactly what the trained one did. The bundled file's sha256 is checked against the
package (nurec.baselines.artifacts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd

from nurec.baselines.artifacts import (
    TRAINING_COMMAND,
    ArtifactError,
    check_trained_for,
    claim_artifact,
    read_npz,
    write_npz,
)
from nurec.baselines.cleaning import clean_hits
from nurec.baselines.common import (
    flatten_hits,
    opening_angle_deg,
    trained_info,
    truth_directions,
)
from nurec.baselines.likelihood import LikelihoodTrackFit
from nurec.baselines.trees import ARRAY_KINDS, Forests, TreeFormatError
from nurec.geometry import DEFAULT_DETECTOR, Geometry
from nurec.methods.contract import MethodInfo, trained_for_record

ARTIFACT = "bdt_uncertainty"
FEATURES = [
    "n_sensors", "n_strings", "log10_charge_pe", "neg_logl_per_hit", "log10_linefit_opening_deg",
    "cos_zenith", "projected_length_m", "log10_paraboloid_sigma_deg", "linefit_speed_m_per_ns",
]
COVERAGE = 0.68
FILE_FORMAT = "nurec-bdt-uncertainty"
FILE_FORMAT_VERSION = 1


def event_features(events: ak.Array, fits: pd.DataFrame, medium_name: str) -> pd.DataFrame:
    """Return the BDT's event-level features (FEATURES columns) from events and likelihood fits."""
    flat = clean_hits(flatten_hits(events), medium_name)
    n = flat.n_events
    direction = fits[["dir_x", "dir_y", "dir_z"]].to_numpy(float)
    along = np.sum(flat["pos"] * direction[flat.event_index], axis=1)
    lo = flat.segment_min(np.where(np.isfinite(along), along, np.inf))
    hi = flat.segment_max(np.where(np.isfinite(along), along, -np.inf))
    # Strings hit: distinct horizontal positions (rounded to 1 m) per event.
    key = np.column_stack([flat.event_index, np.round(flat["pos"][:, 0]), np.round(flat["pos"][:, 1])])
    unique_keys = np.unique(key, axis=0) if len(key) else np.zeros((0, 3))
    n_strings = np.bincount(unique_keys[:, 0].astype(int), minlength=n).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        charge = flat.segment_sum(np.where(np.isfinite(flat["charge"]), flat["charge"], 0.0))
        features = pd.DataFrame({
            "n_sensors": fits["n_hits_used"].to_numpy(float),
            "n_strings": n_strings,
            "log10_charge_pe": np.log10(charge),
            "neg_logl_per_hit": fits["neg_logl_per_hit"].to_numpy(float),
            "log10_linefit_opening_deg": np.log10(fits["linefit_opening_deg"].to_numpy(float) + 0.01),
            "cos_zenith": np.cos(fits["zenith"].to_numpy(float)),
            "projected_length_m": np.where(hi > lo, hi - lo, np.nan),
            "log10_paraboloid_sigma_deg": np.log10(fits["paraboloid_sigma_deg"].to_numpy(float)),
            "linefit_speed_m_per_ns": fits["linefit_speed_m_per_ns"].to_numpy(float)
            if "linefit_speed_m_per_ns" in fits else np.nan,
        })
    return features.replace([np.inf, -np.inf], np.nan)[FEATURES]


class BdtUncertainty:
    """Likelihood track fit plus a BDT-predicted, calibrated 68% angular uncertainty."""

    name = "bdt-uncertainty"
    version = "1.0"

    def __init__(self, detector: str | Geometry = DEFAULT_DETECTOR, model: str | os.PathLike | None = None,
                 trained: bool = True, n_jobs: int | None = None, seed: int = 0):
        """``model``: a model file written by save() (.npz); default: the shipped one.

        Raises DetectorMismatch before loading if the model is for another detector, and
        ArtifactError (one line naming the file) for a file that is not a valid model.
        """
        self.likelihood = LikelihoodTrackFit(detector=detector, n_jobs=n_jobs)
        self.medium_name = self.likelihood.setup.medium.name
        self.seed = seed
        self.forests: Forests | None = None  # one boosted forest per training fold
        self.scale = 1.0
        self.trained_for: dict = {}
        path = claim_artifact(self, ARTIFACT, model, trained, self.likelihood.setup.geometry)
        if path is not None:
            self.load(path)

    def describe(self) -> MethodInfo:
        """Return what the method is and the detectors its BDT is valid for."""
        return trained_info(self, ("direction", "angular_uncertainty"), self.trained_for, TRAINING_COMMAND)

    def fit(self, events: ak.Array, fits: pd.DataFrame | None = None, n_folds: int = 4) -> dict[str, float]:
        """Train on simulated events (likelihood fits computed if not given); return calibration metrics.

        One regressor is trained per fold of an ``n_folds``-fold split; each event's
        out-of-fold prediction comes from the regressor that did not see it, and the 68%
        scale is set on those. New events get the mean (in log space) of all fold
        regressors, which is at least as sharp as one of them, so the coverage of new
        events is the calibrated 68% or slightly above.
        """
        from scipy.stats import spearmanr

        fits = self.likelihood.reconstruct(events) if fits is None else fits
        features = event_features(events, fits, self.medium_name)
        error = opening_angle_deg(fits[["dir_x", "dir_y", "dir_z"]].to_numpy(float), truth_directions(events))
        ok = np.flatnonzero((fits["fit_status"].to_numpy() == "ok") & np.isfinite(error))
        target = np.log(np.maximum(error, 1e-3))
        fold = np.random.default_rng(self.seed).permutation(len(ok)) % n_folds
        out_of_fold = np.full(len(ok), np.nan)
        regressors = []
        for k in range(n_folds):
            train, held_out = ok[fold != k], ok[fold == k]
            model = self._new_regressor().fit(features.iloc[train], target[train])
            out_of_fold[fold == k] = np.exp(model.predict(features.iloc[held_out]))
            regressors.append(model)
        # From here on the trees are plain arrays: what is saved is what predicts.
        self.forests = Forests.from_sklearn(regressors)
        self.scale = float(np.quantile(error[ok] / out_of_fold, COVERAGE))
        energies = ak.to_numpy(events.truth.energy).astype(float)[ok]
        self.trained_for = trained_for_record(self.likelihood.setup.geometry,
                                              (float(energies.min()), float(energies.max())))
        return {"n_events": int(len(ok)), "n_folds": n_folds, "scale": self.scale,
                "spearman_out_of_fold": float(spearmanr(out_of_fold, error[ok]).statistic),
                "median_error_deg": float(np.median(error[ok]))}

    def _new_regressor(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor  # training only

        # Absolute error: the median of log(error) is robust to the few badly failed fits.
        return HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
            min_samples_leaf=20, l2_regularization=1.0, random_state=self.seed,
        )

    def predict_uncertainty_deg(self, events: ak.Array, fits: pd.DataFrame) -> np.ndarray:
        """Return the calibrated 68% angular uncertainty [deg] of each fit (NaN where it failed)."""
        if self.forests is None:
            raise ValueError("bdt-uncertainty: not trained; call fit() or pass model=PATH")
        features = event_features(events, fits, self.medium_name)
        log_sigma = np.mean(self.forests.predict(features.to_numpy(np.float64)), axis=0)
        sigma = self.scale * np.exp(log_sigma)
        return np.where(fits["fit_status"].to_numpy() == "ok", sigma, np.nan)

    def reconstruct(self, events: ak.Array) -> pd.DataFrame:
        """Return the likelihood fit with ``angular_uncertainty_deg`` from the BDT."""
        fits = self.likelihood.reconstruct(events)
        fits["angular_uncertainty_deg"] = self.predict_uncertainty_deg(events, fits)
        fits["method"] = self.name
        return fits

    def save(self, path: str | os.PathLike) -> Path:
        """Write the trees (numeric arrays), scale, feature list and trained_for as an .npz; return the path."""
        if self.forests is None:
            raise ValueError("bdt-uncertainty: not trained; nothing to save")
        header = {"format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "features": FEATURES,
                  "scale": self.scale, "trained_for": self.trained_for or None,
                  "model": "log sigma = mean over forests of the tree sums; sigma_deg = scale * exp(log sigma)"}
        return write_npz(path, self.forests.to_arrays(), header)

    def load(self, path: str | os.PathLike) -> BdtUncertainty:
        """Load a model written by save(); ArtifactError (one line naming the file) if it is not one.

        Reads numeric arrays and JSON only (no pickle), so any file is safe to try.
        """
        path = Path(path)
        arrays, header = read_npz(path, ARRAY_KINDS)
        if header.get("format") != FILE_FORMAT:
            raise ArtifactError(f"{path}: not a {FILE_FORMAT} file (format={header.get('format')!r})")
        version = header.get("format_version")
        if not isinstance(version, int) or version > FILE_FORMAT_VERSION:
            raise ArtifactError(f"{path}: format_version {version!r} is not one this nurec reads "
                                f"(up to {FILE_FORMAT_VERSION})")
        if header.get("features") != FEATURES:
            raise ArtifactError(f"{path}: model was trained on other features ({header.get('features')})")
        scale = header.get("scale")
        if not (isinstance(scale, int | float) and not isinstance(scale, bool) and np.isfinite(scale) and scale > 0):
            raise ArtifactError(f"{path}: scale {scale!r} is not a positive finite number")
        check_trained_for(header.get("trained_for"), path)
        try:
            forests = Forests.from_arrays(arrays, n_features=len(FEATURES))
        except TreeFormatError as err:
            raise ArtifactError(f"{path}: {err}") from None
        self.forests, self.scale = forests, float(scale)
        return self


make_bdt_uncertainty = BdtUncertainty
"""Registry factory: BdtUncertainty(detector=..., model=PATH or the shipped one, n_jobs=...)."""
