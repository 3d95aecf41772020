"""The training loop: seeded, split by event id, AdamW + schedule, early stopping, checkpoints.

Every epoch draws its shuffle and torch random state from (seed, epoch) alone, and the
checkpoint holds optimiser and schedule state, so resuming from a checkpoint continues
exactly as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nurec.models.network import GraphNetwork, ModelSpec
from nurec.models.reconstruct import predict_outputs
from nurec.models.serialize import load_payload, network_from_payload, save_model
from nurec.models.tasks import (
    angular_error_deg,
    containment_radius_deg,
    fit_kappa_scale,
    task_losses,
)
from nurec.threads import torch_threads
from nurec.train.checkpoint import load_checkpoint, save_checkpoint
from nurec.train.config import TrainConfig
from nurec.train.data import TrainingSet, dataset_trained_for, is_validation, load_training_set

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_direction", "train_energy", "train_track",
    "val_loss", "val_direction", "val_energy", "val_track", "val_median_angle_deg",
    "val_log10e_resolution", "val_track_auc", "val_coverage68", "train_events_per_s", "elapsed_s",
]


@dataclass
class TrainResult:
    """Where a training run left its outputs, and its summary."""

    out_dir: Path
    model_path: Path
    summary: dict[str, Any]


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _tensors(data: TrainingSet, index: np.ndarray, device: str) -> tuple[torch.Tensor, ...]:
    graphs = data.graphs.take(index)
    arrays = (graphs.nodes, graphs.counts, graphs.globals, data.targets[index])
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def evaluate(network: GraphNetwork, data: TrainingSet, batch_size: int) -> dict[str, float]:
    """Return losses and quality metrics of ``network`` on ``data`` (uncalibrated kappa)."""
    from sklearn.metrics import roc_auc_score

    network.eval()
    outputs = predict_outputs(network, data.graphs, batch_size)
    out_t, tgt_t = torch.from_numpy(outputs), torch.from_numpy(data.targets)
    with torch.no_grad():
        losses = {k: float(v) for k, v in task_losses(out_t, tgt_t, network.spec.tasks).items()}
    error = angular_error_deg(outputs[:, :3], data.targets[:, :3])
    kappa = np.linalg.norm(outputs[:, :3].astype(np.float64), axis=1) * float(network.kappa_scale)
    residual = outputs[:, 3] - data.targets[:, 3]
    labels = data.targets[:, 4]
    auc = float(roc_auc_score(labels, outputs[:, 4])) if 0 < labels.sum() < len(labels) else float("nan")
    return {
        **losses,
        "median_angle_deg": float(np.median(error)),
        "log10e_resolution": float(0.5 * (np.percentile(residual, 84) - np.percentile(residual, 16))),
        "track_auc": auc,
        "coverage68": float(np.mean(error <= containment_radius_deg(kappa))),
        "outputs": outputs,
        "angular_error_deg": error,
    }


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=max(total, 4),
            pct_start=min(0.3, max(0.1, 2.0 / max(total, 4))),
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=config.learning_rate * 0.01)


def prepare_data(spec: ModelSpec, config: TrainConfig, data_dir: str | os.PathLike,
                 val_dir: str | os.PathLike | None) -> tuple[TrainingSet, TrainingSet]:
    """Return (training, validation) sets: a hash split of ``data_dir``, or ``val_dir`` if given."""
    data = load_training_set(data_dir, spec.features, config.max_events)
    if val_dir is not None:
        return data, load_training_set(val_dir, spec.features)
    val = is_validation(data.event_id, data.run_id, config.val_fraction)
    if val.all() or not val.any():
        raise ValueError(f"{data_dir}: too few events ({len(data)}) for a validation split")
    return data.subset(np.flatnonzero(~val)), data.subset(np.flatnonzero(val))


def train(
    spec: ModelSpec,
    config: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    val_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    name: str | None = None,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train a network and write checkpoints, metrics.csv, model.pt and summary.json to ``out_dir``.

    ``stop_after_epochs`` ends this call after that many epochs (resume later with
    ``resume=True``); the schedule still spans ``config.epochs``. Torch's thread count is
    set to ``config.threads`` for the run and restored afterwards.
    """
    with torch_threads(torch.get_num_threads()):  # restores the caller's count after the run
        return _train(spec, config, data_dir, out_dir, val_dir, resume, progress, name, stop_after_epochs)


def _train(spec, config, data_dir, out_dir, val_dir, resume, progress, name, stop_after_epochs) -> TrainResult:
    out_dir = Path(out_dir)
    spec, config, checkpoint = _start_or_resume(spec, config, out_dir, resume)
    torch.set_num_threads(config.threads)
    train_set, val_set = prepare_data(spec, config, data_dir, val_dir)
    run = _Run.build(spec, config, train_set, val_set, checkpoint, out_dir)
    run.metadata = {
        "name": name or out_dir.name,
        "training": config.to_dict(),
        "data": str(data_dir),
        "trained_for": dataset_trained_for(data_dir),
        "val_data": str(val_dir) if val_dir else None,
        "n_train": len(train_set),
        "n_val": len(val_set),
        "n_parameters": run.network.n_parameters(),
        "torch_version": torch.__version__,
    }
    metrics_path = out_dir / "metrics.csv"
    _open_metrics(metrics_path, resumed=checkpoint is not None, last_epoch=run.state["epoch"])
    started = time.perf_counter() - run.state["elapsed_s"]
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, run.state["epoch"] + stop_after_epochs)
    while run.state["epoch"] < last_epoch and run.state["stopped"] is None:
        epoch = run.state["epoch"] + 1
        losses, seen, train_rate = run.train_epoch(epoch, progress)
        val = evaluate(run.network, val_set, config.eval_batch_size)
        improved = run.end_epoch(epoch, val, time.perf_counter() - started)
        row = [epoch, run.scheduler.get_last_lr()[0]] + [losses[k] / seen for k in ("loss", "direction", "energy", "track")]
        row += [val[k] for k in ("loss", "direction", "energy", "track", "median_angle_deg",
                                 "log10e_resolution", "track_auc", "coverage68")]
        row += [train_rate, run.state["elapsed_s"]]
        with open(metrics_path, "a", newline="") as handle:
            csv.writer(handle).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        if progress:
            print(f"epoch {epoch}: train {losses['loss'] / seen:.4f}  val {val['loss']:.4f}  "
                  f"median angle {val['median_angle_deg']:.2f} deg  dlog10E {val['log10e_resolution']:.3f}  "
                  f"AUC {val['track_auc']:.3f}  {train_rate:.0f} ev/s" + ("  *" if improved else ""))
        if improved:
            save_model(run.network, out_dir / "best.pt", run.metadata)
        save_checkpoint(out_dir / "last.pt", run.network, run.optimizer, run.scheduler, run.state, run.metadata)
    return _finish(out_dir, config, val_set, run.state, run.metadata, progress)


def _start_or_resume(spec: ModelSpec, config: TrainConfig, out_dir: Path,
                     resume: bool) -> tuple[ModelSpec, TrainConfig, dict | None]:
    """Return (spec, config, checkpoint): a resumed run's own settings and last checkpoint, or a new run's."""
    if resume:
        if not (out_dir / "last.pt").exists():
            raise FileNotFoundError(f"{out_dir / 'last.pt'}: nothing to resume from")
        checkpoint = load_checkpoint(out_dir / "last.pt")
        meta = json.loads(checkpoint["metadata_json"])
        config = TrainConfig.from_dict(meta["training"])
        spec = ModelSpec.from_dict(json.loads(checkpoint["spec_json"]))
        return spec, config.validate(), checkpoint
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir}: already holds a training run (use --resume or a new --out)")
    return spec, config.validate(), None


def _open_metrics(path: Path, resumed: bool, last_epoch: int) -> None:
    """Start metrics.csv, or keep a resumed run's rows up to its checkpoint (a run killed mid-write)."""
    if not resumed or not path.exists():
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerow(METRIC_COLUMNS)
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= last_epoch])


@dataclass
class _Run:
    """A training run in progress: the network, its optimiser and schedule, and the loop state."""

    spec: ModelSpec
    config: TrainConfig
    train_set: TrainingSet
    network: GraphNetwork
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: dict[str, Any]
    metadata: dict[str, Any]

    @classmethod
    def build(cls, spec: ModelSpec, config: TrainConfig, train_set: TrainingSet, val_set: TrainingSet,
              checkpoint: dict | None, out_dir: Path) -> _Run:
        """Return a new run (seeded initial weights, statistics of the training set) or the checkpoint's."""
        torch.manual_seed(config.seed)
        network = GraphNetwork(spec)
        network.set_statistics(train_set.graphs)
        network.to(config.device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
        scheduler = _schedule(optimizer, config, steps_per_epoch)
        state: dict[str, Any] = {"epoch": 0, "best_val_loss": None, "best_epoch": None, "bad_epochs": 0,
                                 "elapsed_s": 0.0, "stopped": None}
        if checkpoint is not None:
            network, _ = network_from_payload(checkpoint, str(out_dir / "last.pt"))
            network.to(config.device)
            optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                          weight_decay=config.weight_decay)
            scheduler = _schedule(optimizer, config, steps_per_epoch)
            optimizer.load_state_dict(checkpoint["optimizer"])  # after the schedule, which resets the lr
            scheduler.load_state_dict(checkpoint["scheduler"])
            state = checkpoint["loop_state"]
        return cls(spec, config, train_set, network, optimizer, scheduler, state, {})

    def train_epoch(self, epoch: int, progress: bool) -> tuple[dict[str, float], int, float]:
        """Return (summed losses, events seen, events/s) of one epoch over shuffled batches (seeded per epoch)."""
        config = self.config
        torch.manual_seed(config.seed * 100_003 + epoch)
        batches = _batches(len(self.train_set), config.batch_size, np.random.default_rng([config.seed, epoch]))
        self.network.train()
        sums = {"loss": 0.0, "direction": 0.0, "energy": 0.0, "track": 0.0}
        seen, epoch_start = 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for index in bar:
            nodes, counts, glob, targets = _tensors(self.train_set, index, config.device)
            losses = task_losses(self.network(nodes, counts, glob), targets, self.spec.tasks)
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            for key in sums:
                sums[key] += losses[key].item() * len(index)
            seen += len(index)
            rate = seen / max(time.perf_counter() - epoch_start, 1e-9)
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", ev_s=f"{rate:.0f}")
        return sums, seen, seen / max(time.perf_counter() - epoch_start, 1e-9)

    def end_epoch(self, epoch: int, val: dict[str, Any], elapsed_s: float) -> bool:
        """Record the epoch's validation loss and decide on early stopping; return True if it improved."""
        state, config = self.state, self.config
        state["epoch"] = epoch
        state["elapsed_s"] = elapsed_s
        improved = state["best_val_loss"] is None or val["loss"] < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        if state["bad_epochs"] >= config.patience:
            state["stopped"] = f"early stop: no improvement for {config.patience} epochs"
        elif config.time_limit_min and state["elapsed_s"] > 60 * config.time_limit_min:
            state["stopped"] = f"time limit {config.time_limit_min} min"
        return improved


def _finish(out_dir: Path, config: TrainConfig, val_set: TrainingSet, state: dict[str, Any],
            metadata: dict[str, Any], progress: bool) -> TrainResult:
    """Write model.pt (best weights, kappa calibrated on the validation events) and summary.json."""
    best, _ = network_from_payload(load_payload(out_dir / "best.pt"), str(out_dir / "best.pt"))
    val = evaluate(best, val_set, config.eval_batch_size)
    kappa = np.linalg.norm(val["outputs"][:, :3].astype(np.float64), axis=1)
    scale = fit_kappa_scale(kappa, val["angular_error_deg"])
    best.kappa_scale.fill_(scale)
    calibrated = evaluate(best, val_set, config.eval_batch_size)
    summary = {
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped": state["stopped"] or ("completed all epochs" if state["epoch"] >= config.epochs
                                        else f"stopped on request after epoch {state['epoch']} of {config.epochs}"),
        "elapsed_s": round(state["elapsed_s"], 1),
        "kappa_scale": scale,
        "val": {k: v for k, v in calibrated.items() if not isinstance(v, np.ndarray)},
    }
    metadata = {**metadata, "summary": summary}
    model_path = save_model(best, out_dir / "model.pt", metadata)
    (out_dir / "summary.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
    if progress:
        v = summary["val"]
        print(f"done: {summary['stopped']}; best epoch {summary['best_epoch']} of {summary['epochs_run']} "
              f"in {summary['elapsed_s']:.0f} s; validation ({len(val_set)} events): median angle "
              f"{v['median_angle_deg']:.2f} deg, log10E resolution {v['log10e_resolution']:.3f}, "
              f"track AUC {v['track_auc']:.3f}, 68% coverage {v['coverage68']:.3f} (kappa x {scale:.3f}); "
              f"model: {model_path}")
    return TrainResult(out_dir, model_path, summary)
