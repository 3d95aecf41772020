"""TLS, mutual TLS and bearer-token authentication of the reconstruction server."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from service_testing import CentroidDirection, serve_config, small_events

from nurec.client import ReconstructionClient
from services.server import BackgroundServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _certificate(common_name: str, issuer: tuple | None = None, is_ca: bool = False):
    """Return (key, certificate), signed by ``issuer`` = (key, certificate) or self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[1].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    certificate = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    return key, certificate


def _write(path, key, certificate):
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Return paths of a test CA, a server certificate and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca = _certificate("nurec test CA", is_ca=True)
    _, ca_pem = _write(root / "ca", *ca)
    server_key, server_pem = _write(root / "server", *_certificate("localhost", issuer=ca))
    client_key, client_pem = _write(root / "client", *_certificate("nurec client", issuer=ca))
    return {"ca": ca_pem, "server_key": server_key, "server_cert": server_pem,
            "client_key": client_key, "client_cert": client_pem}


@pytest.fixture(scope="module")
def events():
    return small_events(4)


def test_tls_server_serves_a_verifying_client_and_rejects_a_plaintext_one(pki, events):
    config = serve_config(host="localhost", tls_cert=pki["server_cert"], tls_key=pki["server_key"])
    with BackgroundServer(config, CentroidDirection()) as running:
        target = f"localhost:{running.server.port}"
        with ReconstructionClient(target, tls_ca=pki["ca"]) as client:
            assert (client.reconstruct(events)["fit_status"] == "ok").all()
        with ReconstructionClient(target, retries=0) as plaintext, pytest.raises(grpc.RpcError) as err:
            plaintext.reconstruct(events, timeout_s=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rejects_a_client_without_a_certificate(pki, events):
    config = serve_config(host="localhost", tls_cert=pki["server_cert"], tls_key=pki["server_key"],
                          tls_client_ca=pki["ca"])
    with BackgroundServer(config, CentroidDirection()) as running:
        target = f"localhost:{running.server.port}"
        with ReconstructionClient(target, tls_ca=pki["ca"], tls_cert=pki["client_cert"],
                                  tls_key=pki["client_key"]) as client:
            assert len(client.reconstruct(events)) == len(events)
        with ReconstructionClient(target, tls_ca=pki["ca"], retries=0) as anonymous, \
                pytest.raises(grpc.RpcError) as err:
            anonymous.reconstruct(events, timeout_s=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_token_auth_rejects_missing_and_wrong_tokens(tmp_path, events):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with BackgroundServer(serve_config(token_file=str(token_file)), CentroidDirection()) as running:
        with ReconstructionClient(running.target, token="s3cret-token") as client:
            assert len(client.reconstruct(events)) == len(events)
            assert len(list(client.reconstruct_stream([events], batch_events=2))) == 2
        for token in (None, "wrong"):
            with ReconstructionClient(running.target, token=token, retries=0) as intruder:
                with pytest.raises(grpc.RpcError) as err:
                    intruder.reconstruct(events)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as err:
                    list(intruder.reconstruct_stream([events]))
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as err:
                    intruder.list_models()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert intruder.health() == "SERVING"  # probes need no token


def test_key_that_does_not_match_the_certificate_is_a_one_line_error(pki, tmp_path, capsys, monkeypatch):
    from service_testing import register_centroid

    import nurec.methods.registry as registry
    from nurec.cli import main

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    register_centroid()
    other_key, _ = _write(tmp_path / "other", *_certificate("localhost"))
    args = ["serve", "--method", "centroid", "--worker", "thread", "--host", "127.0.0.1", "--port", "0",
            "--metrics-port", "0", "--tls-cert", pki["server_cert"], "--tls-key", other_key]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"nurec serve: error: tls_key: the private key in {other_key} does not match the "
                   f"certificate in {pki['server_cert']}")
