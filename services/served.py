"""The served model: which registered method to serve, its description, and its batch call.

``ServedModel.compute`` is what the batcher runs (in its worker thread): it groups a batch
by detector, refuses detectors a trained method was not trained for, renumbers event ids
within the batch, runs the method through the one run loop (here or in a worker process;
``nurec.methods.run.reconstruct_batch`` isolates events that break a batch), and turns the
predictions into one result message per event.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nurec.geometry import get_geometry
from nurec.methods.contract import DetectorMismatch, DetectorRef, Method, MethodInfo
from nurec.methods.registry import available_methods, build_method
from nurec.methods.run import reconstruct_batch
from nurec.protocol import pb
from services.batcher import WorkerLost
from services.codec import (
    RUN_LOOP_LIMITS,
    DecodeLimits,
    EventBlock,
    EventFailure,
    encode_predictions,
    failure_message,
)
from services.config import ServeConfig
from services.worker import ProcessWorker

log = logging.getLogger("nurec.serve")

DEFAULT_METHOD = ("gnn", "default")
FALLBACK_METHOD = "linefit"


def resolve_method(method: str | None, model: str | None) -> tuple[str, str | None]:
    """Return (method name, "model" option) to serve: the bundled GNN if registered, else LineFit."""
    if method:
        return method, model
    names = {spec.name for spec in available_methods()}
    if DEFAULT_METHOD[0] in names:
        return DEFAULT_METHOD[0], model or DEFAULT_METHOD[1]
    if FALLBACK_METHOD in names:
        return FALLBACK_METHOD, model
    raise ValueError(f"method: no default method registered ({DEFAULT_METHOD[0]} or {FALLBACK_METHOD}); "
                     f"available: {', '.join(sorted(names)) or 'none'}")


def describe_model(name: str, variant: str | None, description: MethodInfo) -> pb.ModelInfo:
    """Return the ModelInfo of a served method from its description (``Method.describe()``)."""
    return pb.ModelInfo(
        name=name, variant=variant or "", version=description.version, description=description.description,
        detectors=[d.name for d in description.detectors], estimates=list(description.estimates),
        trained=description.trained, training=description.training,
        metrics={k: float(v) for k, v in description.metrics.items()},
    )


class ServedModel:
    """A registered method served for every detector it is valid for, and the batch call of the batcher.

    The method is built per detector on first use (in the worker process, or here in
    thread mode). Events of a detector a trained method was not trained for are answered
    with FAILED_PRECONDITION, naming both detectors and the training command.
    """

    def __init__(self, name: str, variant: str | None, options: dict[str, Any], config: ServeConfig,
                 worker: ProcessWorker | None = None, method: Method | None = None) -> None:
        self.name = name
        self.options = dict(options)
        self.worker = worker
        # A method instance given by the caller (tests, embedding) serves every detector as it is.
        self._fixed = method
        self._methods: dict[str, Method] = {}
        self._refusals: dict[str, EventFailure | None] = {}
        described = method if method is not None else self.method_for(config.detector)
        self.description = described.describe()
        self.info = describe_model(name, variant, self.description)
        self.version = self.info.version
        self.limits = DecodeLimits(max_hits=config.max_hits, default_detector=config.detector)

    def method_for(self, detector: str) -> Method:
        """Return the method built for ``detector`` (this process; thread mode and descriptions)."""
        if self._fixed is not None:
            return self._fixed
        if detector not in self._methods:
            self._methods[detector] = build_method(self.name, detector, **self.options)
        return self._methods[detector]

    def refusal(self, detector: str) -> EventFailure | None:
        """Return the FAILED_PRECONDITION failure of events of ``detector``, or None if the model serves it."""
        if detector not in self._refusals:
            ref = DetectorRef.of(get_geometry(detector))
            self._refusals[detector] = None if self.description.valid_for(ref) else EventFailure(
                pb.FAILED_PRECONDITION, "detector", str(DetectorMismatch(self.description, ref)))
        return self._refusals[detector]

    def compute(self, block: EventBlock) -> list[pb.EventReconstruction]:
        """Return one result message per event of ``block`` (events of each detector run together)."""
        detectors = np.unique(block.detector)
        if len(detectors) <= 1:
            return self._compute_detector(block, str(detectors[0]) if len(detectors) else self.limits.default_detector)
        results: list[Any] = [None] * len(block)
        for detector in detectors:
            index = np.flatnonzero(block.detector == detector)
            for i, result in zip(index, self._compute_detector(block.take(index), str(detector)), strict=True):
                results[i] = result
        return results

    def _compute_detector(self, block: EventBlock, detector: str) -> list[pb.EventReconstruction]:
        failure = self.refusal(detector)
        if failure is None:
            try:
                # Event ids are renumbered within the batch: different clients may reuse ids.
                numbered = block.renumbered()
                table = (self.worker.reconstruct_block(detector, numbered) if self.worker is not None
                         else reconstruct_batch(self.method_for(detector), numbered.to_awkward(), limits=RUN_LOOP_LIMITS))
                return encode_predictions(table, block.event_id, self.version)
            except WorkerLost:
                raise  # the callers are answered UNAVAILABLE (retryable), and the watchdog restarts the worker
            except Exception as err:  # the method could not be built for this detector, or raised
                log.warning("batch failed", extra={"events": len(block), "detector": detector, "error": repr(err)})
                failure = EventFailure(pb.INTERNAL, "", f"reconstruction failed: {err}")
        return [failure_message(event_id, self.name, self.version, failure) for event_id in block.event_id]
