"""Code generated from proto/nurec/v1/reconstruction.proto; see services/generate.py."""
