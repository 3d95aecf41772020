"""Code generated from the protos under proto/; see services/generate.py."""
