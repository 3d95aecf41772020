"""Registers the test method "centroid" on import (for `nurec serve` subprocesses and benchmarks)."""

from service_testing import register_centroid

register_centroid()
