"""Server settings as a plain dataclass, loadable from TOML, environment and the command line.

Precedence, lowest first: defaults < config file ([serve] table of a TOML file) <
environment variables ``NUREC_SERVE_<SETTING>`` (e.g. ``NUREC_SERVE_PORT=50052``) <
command-line flags.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nurec.client import TOKEN_ENV

ENV_PREFIX = "NUREC_SERVE_"


class ServeConfigError(ValueError):
    """An invalid server setting; the message names the setting."""


@dataclass(frozen=True)
class ServeConfig:
    """How to serve: which model, where, batching, limits and security.

    ``method``/``model`` name a method in the nurec registry and its "model" option;
    ``method`` None means the bundled GNN if it is registered, else LineFit.
    Admission (services/batcher.py): a call is refused at once with RESOURCE_EXHAUSTED
    when the work queued ahead of it is estimated at more than ``max_queue_wait_s``
    seconds (from the measured time of recent model calls), or when it could not be
    answered before its deadline; ``max_queue`` caps the queued events on top (memory).
    ``metrics_port`` 0 disables the Prometheus endpoint; it listens on ``metrics_host``
    (localhost unless asked) and, with ``metrics_token_file``, wants that bearer token.
    ``threads`` sets torch's intra-op threads for inference (None: leave torch's
    default). ``worker`` "process" runs the model in a worker process (parallel to
    request handling, see services/worker.py), "thread" in a thread of the server process.
    The watchdog restarts a worker that sends no heartbeat for ``worker_timeout_s``
    (process worker) or whose model call runs longer than ``batch_timeout_s`` and ten
    times its estimate (0: never); ``drain_timeout_s`` is a hard limit on the SIGTERM
    drain, after which unfinished calls are answered UNAVAILABLE.
    """

    method: str | None = None
    model: str | None = None
    host: str = "localhost"
    port: int = 50051
    max_batch_size: int = 512
    max_queue_delay_ms: float = 5.0
    max_queue: int = 10_000
    max_queue_wait_s: float = 1.0
    max_hits: int = 20_000
    max_message_mb: int = 64
    threads: int | None = None
    worker: str = "process"
    metrics_port: int = 9464
    metrics_host: str = "localhost"
    metrics_token_file: str | None = None
    detector: str = "icecube86"
    drain_timeout_s: float = 30.0
    worker_timeout_s: float = 3.0
    batch_timeout_s: float = 60.0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    token_file: str | None = None
    log_level: str = "INFO"
    log_format: str = "json"

    def validate(self) -> ServeConfig:
        """Return self if every setting is valid, else raise ServeConfigError naming it."""
        positive = ("max_batch_size", "max_queue", "max_hits", "max_message_mb")
        for name in positive:
            if getattr(self, name) < 1:
                raise ServeConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.max_queue < self.max_batch_size:
            raise ServeConfigError(
                f"max_queue: {self.max_queue} is below max_batch_size {self.max_batch_size}")
        if self.max_queue_delay_ms < 0:
            raise ServeConfigError(f"max_queue_delay_ms: must be >= 0, got {self.max_queue_delay_ms}")
        for name in ("max_queue_wait_s", "worker_timeout_s"):
            if not getattr(self, name) > 0:
                raise ServeConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("batch_timeout_s", "drain_timeout_s"):
            if not getattr(self, name) >= 0:
                raise ServeConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.port < 65536:
            raise ServeConfigError(f"port: {self.port} is not a TCP port")
        if not 0 <= self.metrics_port < 65536:
            raise ServeConfigError(f"metrics_port: {self.metrics_port} is not a TCP port")
        if self.threads is not None and self.threads < 1:
            raise ServeConfigError(f"threads: must be at least 1, got {self.threads}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeConfigError("tls_cert, tls_key: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ServeConfigError("tls_client_ca: mutual TLS needs tls_cert and tls_key too")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "token_file", "metrics_token_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ServeConfigError(f"{name}: no such file {path}")
        if self.worker not in ("process", "thread"):
            raise ServeConfigError(f"worker: '{self.worker}' is not process or thread")
        if self.log_format not in ("json", "text"):
            raise ServeConfigError(f"log_format: '{self.log_format}' is not json or text")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-able data (for logs and metadata)."""
        return asdict(self)

    def updated(self, changes: Mapping[str, Any], source: str) -> ServeConfig:
        """Return a copy with ``changes`` applied (values coerced to each setting's type)."""
        known = {f.name: f for f in fields(self)}
        values = {}
        for key, value in changes.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ServeConfigError(f"{source}: unknown setting '{key}'")
            values[name] = _coerce(name, known[name].type, value, source)
        return replace(self, **values)


def _coerce(name: str, annotation: Any, value: Any, source: str) -> Any:
    text = str(annotation)
    if value is None or (isinstance(value, str) and value == "" and "None" in text):
        return None
    try:
        if text.startswith("int"):
            return int(value)
        if text.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ServeConfigError(f"{source}: {name}: cannot read '{value}' as {text}") from None


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Return the server settings from defaults, a TOML file, the environment and overrides."""
    config = ServeConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ServeConfigError(f"config: no such file {path}")
        with open(path, "rb") as handle:
            try:
                data = tomllib.load(handle)
            except tomllib.TOMLDecodeError as err:
                raise ServeConfigError(f"{path}: not valid TOML ({err})") from None
        config = config.updated(data.get("serve", data), str(path))
    environ = os.environ if environ is None else environ
    from_env = {key[len(ENV_PREFIX):].lower(): value for key, value in environ.items()
                if key.startswith(ENV_PREFIX) and key != TOKEN_ENV}
    config = config.updated(from_env, "environment")
    config = config.updated({k: v for k, v in (overrides or {}).items() if v is not None}, "arguments")
    return config.validate()
