"""The gRPC reconstruction service of nurec.

Modules, one job each: ``config`` (settings), ``codec`` (messages <-> events and
predictions), ``batcher`` (dynamic batching), ``worker`` (where the model runs),
``models`` (the served method and its description), ``servicer`` (the RPCs),
``server`` (lifecycle: health, reflection, metrics, draining), ``auth`` (TLS, bearer token),
``metrics`` (Prometheus), ``logs`` (JSON logs), ``generate`` (protoc for
proto/nurec/v1/reconstruction.proto into ``_generated``). The client is ``nurec.client``.
"""
