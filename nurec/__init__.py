"""nurec: neutrino event reconstruction for IceCube- and KM3NeT-like detectors."""

__version__ = "0.1.0"
