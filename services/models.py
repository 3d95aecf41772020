"""The served model: which registered method to serve, its description, and its batch call.

``ServedModel.compute`` is what the batcher runs (in its worker thread): it renumbers
event ids within the batch, runs the method (here or in a worker process), and turns the
prediction table into one result message per event, isolating events that break a batch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from nurec.protocol import pb
from nurec.registry import Reconstructor, available_methods
from services.batcher import BatchFailed
from services.codec import (
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


def _card(method: Reconstructor) -> dict[str, Any]:
    """Return the model card of a method as a dict (empty if it has none)."""
    for attribute in ("card", "model_card", "metadata"):
        card = getattr(method, attribute, None)
        if callable(card) and not isinstance(card, Mapping):
            card = card()
        if card is None:
            continue
        if dataclasses.is_dataclass(card):
            return dataclasses.asdict(card)
        if hasattr(card, "to_dict"):
            return dict(card.to_dict())
        if isinstance(card, Mapping):
            return dict(card)
    return {}


def _names(value: Any) -> list[str]:
    """Return names from a string, a {"name": ...} mapping, or a list of either."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping):
        return [str(value["name"])] if "name" in value else []
    if isinstance(value, list | tuple):
        return [name for item in value for name in _names(item)]
    return []


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Return the numeric leaves of nested metrics as {"a.b": value}."""
    if isinstance(data, Mapping):
        out: dict[str, float] = {}
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(data, bool) or not isinstance(data, int | float | np.number):
        return {}
    return {prefix.rstrip("."): float(data)}


def _card_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """Return the card's "metrics", else the validation numbers of a training summary ("val.*")."""
    if card.get("metrics"):
        return _numbers(card["metrics"])
    summary = card.get("summary")
    if isinstance(summary, Mapping) and isinstance(summary.get("val"), Mapping):
        return _numbers(summary["val"], "val.")
    return {}


def describe_model(name: str, variant: str | None, method: Reconstructor) -> pb.ModelInfo:
    """Return the ModelInfo of a served method from its registry entry and model card."""
    card = _card(method)
    spec = {s.name: s for s in available_methods()}.get(name)
    detectors = _names(card.get("detectors") or card.get("detector"))
    inputs = _names(card.get("inputs") or card.get("features") or getattr(method, "features", None))
    return pb.ModelInfo(
        name=name, variant=variant or "", version=str(getattr(method, "version", "")),
        description=str(card.get("description") or (spec.description if spec else "")),
        detectors=detectors, inputs=inputs, metrics=_card_metrics(card),
    )


class ServedModel:
    """A loaded method, its description, and the function the batcher calls (in the worker thread).

    With a ProcessWorker the method's ``reconstruct`` runs in that process; this process
    keeps its own copy of the method only to describe it.
    """

    def __init__(self, name: str, variant: str | None, method: Reconstructor, config: ServeConfig,
                 worker: ProcessWorker | None = None) -> None:
        self.name = name
        self.method = method
        self.worker = worker
        self.info = describe_model(name, variant, method)
        self.version = self.info.version
        self.limits = DecodeLimits(max_hits=config.max_hits, default_detector=config.detector,
                                   model_detectors=tuple(self.info.detectors), model_name=name)

    def compute(self, block: EventBlock) -> list[pb.EventReconstruction]:
        """Return one result message per event of ``block`` (events of each detector run together)."""
        detectors = np.unique(block.detector)
        if len(detectors) <= 1:
            return self._compute_group(block)
        results: list[Any] = [None] * len(block)
        for detector in detectors:
            index = np.flatnonzero(block.detector == detector)
            for i, result in zip(index, self._compute_group(block.take(index)), strict=True):
                results[i] = result
        return results

    def _compute_group(self, block: EventBlock) -> list[pb.EventReconstruction]:
        try:
            # Event ids are renumbered within the batch: different clients may reuse ids.
            numbered = dataclasses.replace(block, event_id=np.arange(len(block)))
            table = (self.worker.reconstruct_block(numbered) if self.worker is not None
                     else self.method.reconstruct(numbered.to_awkward()))
            row_ids = table["event_id"].to_numpy()
            if len(table) != len(block) or not np.array_equal(np.sort(row_ids), np.arange(len(block))):
                raise BatchFailed(f"method returned {len(table)} rows for {len(block)} events")
            table = table.iloc[np.argsort(row_ids)]
            return encode_predictions(table, block.event_id, self.version)
        except Exception as err:
            if len(block) == 1:
                log.warning("event failed", extra={"event_id": int(block.event_id[0]), "error": repr(err)})
                failure = EventFailure(pb.INTERNAL, "", f"reconstruction failed: {err}")
                return [failure_message(block.event_id[0], self.name, self.version, failure)]
            # Isolate the event that breaks the batch: its neighbours still get results.
            log.warning("batch failed, retrying event by event", extra={"events": len(block), "error": repr(err)})
            return [r for i in range(len(block)) for r in self._compute_group(block.take([i]))]
