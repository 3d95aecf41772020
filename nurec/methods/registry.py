"""The one method registry: a name maps to a factory of methods following ``nurec.methods.contract``.

The CLI, the gRPC service, the pipeline and the evaluation all build methods here with
``build_method(name, detector, **options)``, so a new method is one ``register_method``
line away from being served and reported, and every trained method is checked against
the detector it is asked to run on. Targets are imported lazily ("module:attribute") so
that asking for LineFit does not import torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nurec.geometry import DEFAULT_DETECTOR, Geometry, get_geometry
from nurec.methods.contract import Method, check_detector


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, where its factory lives, and what it is."""

    name: str
    target: str
    description: str


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, target: str, description: str) -> None:
    """Register a method factory under ``name``; ``target`` is "module:attribute".

    Whether a method is trained, and for which detectors, it says itself (``describe()``).
    """
    _METHODS[name] = MethodSpec(name, target, description)


def available_methods() -> list[MethodSpec]:
    """Return the registered methods in registration order."""
    return list(_METHODS.values())


def method_factory(name: str) -> Callable[..., Method]:
    """Return the factory registered under ``name`` (imported on first use)."""
    if name not in _METHODS:
        known = ", ".join(_METHODS) or "none"
        raise UnknownMethodError(f"unknown method '{name}' (available: {known})")
    module_name, attribute = _METHODS[name].target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def resolve_detector(detector: Geometry | Mapping[str, Any] | str | None) -> Geometry:
    """Return the geometry of a detector given as a Geometry, a metadata record, a name or path (None: default)."""
    if isinstance(detector, Geometry):
        return detector
    if isinstance(detector, Mapping):
        detector = detector.get("name")
    return get_geometry(detector or DEFAULT_DETECTOR)


def build_method(name: str, detector: Geometry | Mapping[str, Any] | str | None = None, **options: Any) -> Method:
    """Return method ``name`` built with ``options`` for ``detector``.

    Raises DetectorMismatch (one line: both detectors and the training command) if the
    method is trained and not valid for ``detector``.
    """
    geometry = resolve_detector(detector)
    method = method_factory(name)(detector=geometry, **options)
    check_detector(method.describe(), geometry)
    return method


def method_accepts(name: str, option: str) -> bool:
    """Return True if the factory of method ``name`` takes keyword option ``option``."""
    parameters = inspect.signature(method_factory(name)).parameters
    return option in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


# Built-in methods. Each line makes a method available to CLI, service and evaluation.
register_method(
    "gnn", "nurec.models.reconstruct:load_gnn",
    "graph neural network (DynEdge-style): direction with calibrated uncertainty, energy, track probability",
)
# Classical baselines (nurec/baselines); trained ones ship their artifacts in nurec/baselines/trained.
register_method("linefit", "nurec.baselines.linefit:make_linefit",
                "improved LineFit: charge-weighted, Huber-robust least-squares plane-wave direction")
register_method("likelihood", "nurec.baselines.likelihood:make_likelihood",
                "SPE likelihood track fit (Pandel ⊗ jitter pdf + noise floor), LineFit seed, iterative restarts")
register_method("likelihood-mpe", "nurec.baselines.likelihood:make_likelihood_mpe",
                "MPE likelihood track fit (first-photon pdf of N photo-electrons), LineFit seed")
register_method("cascade-likelihood", "nurec.baselines.cascade:make_cascade_likelihood",
                "point-cascade likelihood: Poisson charges over all reachable sensors + time pdf; EM energy")
register_method("charge-energy", "nurec.baselines.charge_energy:make_charge_energy",
                "calibrated total-charge energy estimator")
register_method("bdt-uncertainty", "nurec.baselines.bdt_uncertainty:make_bdt_uncertainty",
                "SPE likelihood track fit with a BDT-predicted, calibrated 68% angular uncertainty")
register_method("cnn-energy", "nurec.baselines.cnn_energy:make_cnn_energy",
                "CNN on detector images (strings x depth / z x t) predicting log10 E")

