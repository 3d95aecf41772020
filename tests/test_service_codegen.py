"""The checked-in gRPC code matches what `python -m services.generate` makes from the .proto."""

from __future__ import annotations

import re

from services.generate import DEFAULT_OUT, GENERATED_FILES, generate

# Lines that only record the grpcio-tools/protobuf version that ran, not the proto's content.
_VERSION_LINE = re.compile(r"GRPC_GENERATED_VERSION = |Protobuf Python Version:|^\s+\d+,\s*$")


def _content(text: str) -> list[str]:
    return [line for line in text.splitlines() if not _VERSION_LINE.search(line)]


def test_generated_code_is_up_to_date_with_the_proto(tmp_path):
    generate(tmp_path)
    for name in GENERATED_FILES:
        fresh = _content((tmp_path / name).read_text())
        checked_in = _content((DEFAULT_OUT / name).read_text())
        assert checked_in == fresh, (
            f"nurec/protocol/_generated/{name} is stale: run `python -m services.generate` and commit it")


def test_generated_grpc_module_imports_its_messages_relatively():
    text = (DEFAULT_OUT / "reconstruction_pb2_grpc.py").read_text()
    assert "from . import reconstruction_pb2" in text
    assert "from nurec.v1" not in text


def test_kserve_module_imports_relatively_and_keeps_out_of_the_default_pool():
    text = (DEFAULT_OUT / "grpc_predict_v2_pb2_grpc.py").read_text()
    assert "from . import grpc_predict_v2_pb2" in text
    messages = (DEFAULT_OUT / "grpc_predict_v2_pb2.py").read_text()
    assert "DESCRIPTOR = POOL.AddSerializedFile(" in messages and "_descriptor_pool.Default()" not in messages
