"""Server settings: defaults, TOML file, environment and flags, with errors naming the setting."""

from __future__ import annotations

import pytest

from services.config import ServeConfig, ServeConfigError, load_config
from services.served import resolve_method


def test_settings_layer_file_then_environment_then_arguments(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text('[serve]\nport = 6000\nmax_batch_size = 64\nmethod = "linefit"\nmax_queue_delay_ms = 2.5\n')
    environ = {"NUREC_SERVE_PORT": "6001", "NUREC_SERVE_MAX_QUEUE": "2000", "NUREC_SERVE_TOKEN": "not-a-setting"}
    config = load_config(path, environ=environ, overrides={"port": 6002, "threads": None})
    assert (config.port, config.max_batch_size, config.max_queue, config.method) == (6002, 64, 2000, "linefit")
    assert config.max_queue_delay_ms == 2.5
    assert config.host == "localhost"  # safe default bind


def test_defaults_serve_on_localhost_50051():
    config = load_config(environ={})
    assert (config.host, config.port, config.max_batch_size, config.max_queue_delay_ms, config.max_queue) == \
        ("localhost", 50051, 512, 5.0, 10000)


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_queue": 10, "max_batch_size": 20}, "max_queue"),
    ({"tls_cert": "cert.pem"}, "tls_cert, tls_key"),
    ({"port": 70000}, "port"),
    ({"max_queue_wait_s": 0}, "max_queue_wait_s"),
    ({"worker_timeout_s": -1}, "worker_timeout_s"),
    ({"drain_timeout_s": float("nan")}, "drain_timeout_s"),
    ({"metrics_token_file": "no/such/token"}, "metrics_token_file"),
])
def test_invalid_settings_name_the_setting(changes, message):
    with pytest.raises(ServeConfigError, match=message):
        ServeConfig(**changes).validate()


def test_unknown_and_unreadable_settings_are_errors(tmp_path):
    with pytest.raises(ServeConfigError, match="unknown setting 'max_batch'"):
        load_config(environ={"NUREC_SERVE_MAX_BATCH": "4"})
    with pytest.raises(ServeConfigError, match="port: cannot read 'abc'"):
        load_config(environ={"NUREC_SERVE_PORT": "abc"})


def test_default_method_is_the_bundled_gnn_when_registered(monkeypatch):
    import nurec.methods.registry as registry

    monkeypatch.setattr(registry, "_METHODS", {})
    with pytest.raises(ValueError, match="no default method"):
        resolve_method(None, None)
    registry.register_method("linefit", "x:y", "")
    assert resolve_method(None, None) == ("linefit", None)
    registry.register_method("gnn", "x:y", "")
    assert resolve_method(None, None) == ("gnn", "default")
    assert resolve_method("linefit", None) == ("linefit", None)


def test_model_info_lists_what_the_method_describes():
    from nurec.methods.contract import DetectorRef, MethodInfo
    from services.served import describe_model

    described = MethodInfo("gnn", "v7", "a network", ("direction", "energy"), (DetectorRef("icecube86", "0d6f"),),
                           trained=True, training="nurec train --detector {detector}",
                           metrics={"val.median_angle_deg": 3.5})
    info = describe_model("gnn", "default", described)
    assert (info.name, info.variant, info.version, info.description) == ("gnn", "default", "v7", "a network")
    assert list(info.detectors) == ["icecube86"] and list(info.estimates) == ["direction", "energy"]
    assert info.trained and info.training == "nurec train --detector {detector}"
    assert dict(info.metrics) == {"val.median_angle_deg": 3.5}


def test_busy_ports_are_one_line_errors_naming_the_setting(capsys, monkeypatch):
    import socket

    import nurec.methods.registry as registry
    from nurec.cli import main

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    from service_testing import register_centroid

    register_centroid()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag in ("--port", "--metrics-port"):
            other = "--metrics-port" if flag == "--port" else "--port"
            args = ["serve", "--method", "centroid", "--worker", "thread", "--host", "127.0.0.1",
                    flag, str(port), other, "0"]
            assert main(args) == 1
            setting = flag.lstrip("-").replace("-", "_")
            assert f"nurec serve: error: {setting}: cannot listen on" in capsys.readouterr().err


