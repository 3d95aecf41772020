"""nurec: neutrino event reconstruction for IceCube- and KM3NeT-like detectors."""

from nurec.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(model: str = "default", **options):
    """Return the GNN reconstructor of the bundled default model, a model file or a run directory.

    Imported lazily so that ``import nurec`` does not import torch.
    """
    from nurec.models.reconstruct import load_gnn

    return load_gnn(model, **options)
