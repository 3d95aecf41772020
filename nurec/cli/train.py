"""``nurec train``: train a graph network on a simulated dataset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a GNN reconstruction model on simulated events")
    parser.add_argument("--data", required=True, help="training events (nurec dataset directory)")
    parser.add_argument("--val-data", default=None,
                        help="validation events (default: a hash split of --data by event id)")
    parser.add_argument("--config", default=None,
                        help="TOML file with [model] and [training] tables "
                             "(default: the built-in model and training settings)")
    parser.add_argument("--out", required=True, help="run directory for checkpoints, metrics and model.pt")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                        help="end this call after N more epochs (the schedule still spans all epochs; "
                             "0 with --resume just writes model.pt from the best checkpoint; "
                             "default: train to the end)")
    parser.add_argument("--name", default=None, help="model name stored in its metadata (default: OUT's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nurec.train.config import load_config
    from nurec.train.loop import train

    spec, config = load_config(args.config)
    train(spec, config, args.data, args.out, val_dir=args.val_data, resume=args.resume,
          progress=not args.no_progress, name=args.name, stop_after_epochs=args.stop_after_epochs)
    return 0
