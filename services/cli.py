"""``nurec serve``: serve a registered reconstruction method over gRPC with dynamic batching."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve reconstruction over gRPC (batched, with health, reflection, metrics)",
        description="Serve a registered method over gRPC. Settings come from defaults < --config "
                    "TOML ([serve] table) < NUREC_SERVE_<SETTING> environment variables < flags. "
                    "The bearer token is read from --token-file or $NUREC_SERVE_TOKEN.")
    add = parser.add_argument
    add("--method", help="registered method (default: the bundled GNN 'gnn' if registered, else 'linefit')")
    add("--model", help="the method's 'model' option (default for gnn: 'default')")
    add("--host", help="address to bind (default localhost; 0.0.0.0 for all interfaces)")
    add("--port", type=int, help="gRPC port (default 50051; 0 picks a free one)")
    add("--max-batch-size", type=int, help="events per model call at most (default 512)")
    add("--max-queue-delay-ms", type=float, help="how long the oldest event waits for a fuller batch (default 5)")
    add("--max-queue-wait-s", type=float,
        help="admission control: refuse a call (RESOURCE_EXHAUSTED, at once) when the work queued ahead of it "
             "is estimated at more than this many seconds, from the measured time of recent model calls; "
             "a call that could not be answered before its deadline is refused the same way (default 1)")
    add("--max-queue", type=int, help="events waiting at most (a memory cap); beyond: RESOURCE_EXHAUSTED "
                                      "(default 10000)")
    add("--max-hits", type=int, help="hits per event at most (default 20000)")
    add("--max-message-mb", type=int, help="largest request/response message [MiB] (default 64)")
    add("--threads", type=int, help="torch intra-op threads for inference (default: torch's choice)")
    add("--worker", choices=["process", "thread"],
        help="run the model in a worker process (default; computes in parallel with request handling) "
             "or in a thread of the server process")
    add("--metrics-port", type=int, help="Prometheus /metrics HTTP port (default 9464; 0 disables)")
    add("--metrics-host", help="address the metrics endpoint binds (default localhost, whatever --host is)")
    add("--metrics-token-file", help="file holding a bearer token every /metrics request must carry "
                                     "(default: none needed)")
    add("--detector", help="detector of events that name none (default icecube86)")
    add("--drain-timeout-s", type=float,
        help="hard limit on the SIGTERM drain: calls still unanswered then get UNAVAILABLE, the running batch "
             "is abandoned and the process exits within a second more, with code 1 (default 30)")
    add("--worker-timeout-s", type=float,
        help="a worker process silent this long (stopped, hung) is killed and restarted; meanwhile health is "
             "NOT_SERVING and pending calls get UNAVAILABLE (default 3)")
    add("--batch-timeout-s", type=float,
        help="a model call running longer than this and 10x its estimated time counts as hung: worker "
             "restarted as above (default 60; 0 never)")
    add("--tls-cert", help="server certificate chain (PEM); enables TLS (default: plaintext)")
    add("--tls-key", help="server private key (PEM) (default: none)")
    add("--tls-client-ca", help="CA (PEM) that client certificates must chain to; enables mutual TLS "
                                "(default: none)")
    add("--token-file", help="file holding the bearer token every call must carry "
                             "(default: $NUREC_SERVE_TOKEN; neither: no token needed)")
    add("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    add("--log-format", choices=["json", "text"], help="structured JSON lines (default) or text")
    add("--config", help="TOML file with a [serve] table of the same settings (snake_case; default: none)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from services.config import load_config
    from services.logs import configure_logging
    from services.server import serve

    overrides = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    config = load_config(args.config, overrides=overrides)
    configure_logging(config.log_level, config.log_format)
    return serve(config)
