"""``nurec client``: talk to a running reconstruction server (reconstruct a dataset, health, models)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nurec.cli.options import check_predictions_out, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("client", help="send events to a reconstruction server")
    commands = parser.add_subparsers(dest="client_command", metavar="ACTION", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--target", action="append", default=None,
                         help="server host:port; repeat (or comma-separate) for round-robin over a fleet "
                              "(default localhost:50051)")
        sub.add_argument("--tls-ca", help="CA certificate (PEM) to verify the server; enables TLS "
                                          "(default: plaintext)")
        sub.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS (default: none)")
        sub.add_argument("--tls-key", help="client private key (PEM) for mutual TLS (default: none)")
        sub.add_argument("--token-file", help="file holding the bearer token (default: $NUREC_SERVE_TOKEN)")
        sub.add_argument("--retries", type=int, default=5, help="retries on UNAVAILABLE")
        sub.add_argument("--timeout-s", type=float, default=None,
                         help="deadline of each call/stream [s] (default: none; health: 5)")

    rec = commands.add_parser("reconstruct", help="stream a dataset to the server, write predictions")
    rec.add_argument("data_dir", help="event source (a nurec dataset directory or any readable format)")
    rec.add_argument("--out", required=True, help="predictions file: Parquet (.parquet, .pq) or CSV (.csv)")
    rec.add_argument("--format", default=None, help="source format (default: detected)")
    rec.add_argument("--model", default="", help="served model name (default: the server's default)")
    rec.add_argument("--detector", default=None, help="detector name (default: from the dataset metadata)")
    rec.add_argument("--batch-events", type=positive_int, default=256, help="events per stream message")
    rec.add_argument("--window", type=positive_int, default=8, help="stream messages in flight at most")
    rec.add_argument("--streams", type=int, default=None,
                     help="concurrent streams (default: one per target, so a fleet shares the work)")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar (none is shown off a terminal)")
    common(rec)
    rec.set_defaults(func=run_reconstruct)

    health = commands.add_parser("health", help="print the server's health status")
    common(health)
    health.set_defaults(func=run_health)

    models = commands.add_parser("models", help="list the served models as JSON")
    common(models)
    models.set_defaults(func=run_models)


def _targets(args: argparse.Namespace) -> list[str]:
    targets = [t.strip() for item in (args.target or ["localhost:50051"]) for t in item.split(",") if t.strip()]
    return targets


@contextmanager
def _server_errors(args: argparse.Namespace) -> Iterator[None]:
    """Turn a failed call (server down, refused token, deadline...) into a one-line user error.

    The error names the gRPC status and the target(s), e.g.
    ``UNAVAILABLE at localhost:50051: connections to all backends failing; ...``.
    """
    import grpc

    try:
        yield
    except grpc.RpcError as err:
        code = err.code() if callable(getattr(err, "code", None)) else None
        details = err.details() if callable(getattr(err, "details", None)) else None
        status = code.name if code is not None else "RPC failed"
        text = " ".join(str(details or err).split())  # one line, whatever gRPC put in it
        raise ConnectionError(f"{status} at {','.join(_targets(args))}: {text}") from None


def _client(args: argparse.Namespace):
    from nurec.client import ClientOptions, ReconstructionClient, read_token

    options = ClientOptions(tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                            token=read_token(args.token_file), retries=args.retries)
    return ReconstructionClient(_targets(args), options)


def _detector(args: argparse.Namespace) -> str:
    if args.detector is not None:
        return args.detector
    from nurec.io.sources import source_metadata

    detector = source_metadata(args.data_dir, args.format).get("detector", "")
    return detector.get("name", "") if isinstance(detector, dict) else str(detector or "")


def _total_events(args: argparse.Namespace) -> int | None:
    from nurec.io.sources import source_metadata

    total = source_metadata(args.data_dir, args.format).get("n_events")
    return int(total) if isinstance(total, int | float) else None


def run_reconstruct(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from nurec.io.predictions import write_predictions
    from nurec.io.sources import EVENT_KEYS_FILE, attach_source_keys, iter_events

    check_predictions_out(args.out)  # an unknown suffix is refused before the server is called
    detector = _detector(args)
    total = _total_events(args)
    start = time.perf_counter()
    tables = []
    with _server_errors(args), _client(args) as client:
        info = client.model_info(args.model)  # before the progress bar: an unreachable server is one line
        streams = args.streams or len(_targets(args))
        chunks = iter_events(args.data_dir, args.format)
        with tqdm(total=total, unit="ev", disable=True if args.no_progress else None, desc="reconstruct") as bar:
            for table in client.reconstruct_streams(chunks, streams=streams, detector=detector, model=args.model,
                                                    batch_events=args.batch_events, window=args.window,
                                                    timeout_s=args.timeout_s):
                tables.append(table)
                bar.update(len(table))
    predictions = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if predictions.empty:
        raise ValueError(f"{args.data_dir}: no events to reconstruct")
    if (Path(args.data_dir) / EVENT_KEYS_FILE).exists():  # a converted dataset: keep the source's keys
        predictions = attach_source_keys(predictions, args.data_dir)
    elapsed = time.perf_counter() - start
    metadata = {"source": str(args.data_dir), "targets": args.target, "detector": detector,
                "model": info, "served": True}
    write_predictions(predictions, args.out, metadata)
    failed = int((predictions["fit_status"] != "ok").sum())
    print(f"wrote {len(predictions)} predictions ({failed} failed) to {args.out} in {elapsed:.1f} s "
          f"({len(predictions) / elapsed:.0f} events/s) from {info['name']} {info['version']}")
    return 0


def run_health(args: argparse.Namespace) -> int:
    with _server_errors(args), _client(args) as client:
        status = client.health(timeout_s=args.timeout_s or 5.0)
    print(status)
    return 0 if status == "SERVING" else 1


def run_models(args: argparse.Namespace) -> int:
    with _server_errors(args), _client(args) as client:
        print(json.dumps(client.list_models(), indent=2))
    return 0
