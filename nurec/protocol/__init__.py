"""The library side of the gRPC protocol (proto/nurec/v1/reconstruction.proto).

``pb``/``pb_grpc`` are the generated message and stub modules (regenerate with
``python -m services.generate``); ``codec`` converts events and predictions to and from
messages on the client side. ``nurec.client`` needs nothing from the server package.
"""

from nurec.protocol._generated import reconstruction_pb2 as pb
from nurec.protocol._generated import reconstruction_pb2_grpc as pb_grpc

__all__ = ["pb", "pb_grpc"]
