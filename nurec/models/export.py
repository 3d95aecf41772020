"""TorchScript export of a network's static parts, for serving.

Whole-model TorchScript and torch.export fail on the data-dependent kNN (``../shared/STACK-NOTES.md``),
so only the modules with static shapes are scripted and frozen: the per-node MLP, the
transformer projection, the readout and the head. The kNN searches, the EdgeConv message
passing (its gathers use torch-geometric's patched ``index_select``, which TorchScript
rejects; its linear maps are single matmuls with nothing to fuse), graph pooling and feature
standardisation stay eager. ``benchmarks/bench_gnn.py`` measures what this buys (network-only
columns, eager vs exported): on 2 CPU threads nothing measurable for the default model, whose
time goes to the kNN searches and per-edge gathers, so ``load_gnn`` runs eager unless
``export=True``. Tests check parity with the eager network.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nurec.models.network import GraphNetwork

STATIC_MODULES = ("post", "project", "readout", "head")
"""Backbone attributes with static shapes (present ones are scripted), besides ``convs``."""


def _script(module: nn.Module) -> torch.jit.ScriptModule:
    return torch.jit.freeze(torch.jit.script(module.eval()))


def export_static_parts(network: GraphNetwork) -> GraphNetwork:
    """Return a copy of ``network`` (eval mode, inference only) with its static parts scripted and frozen."""
    exported = copy.deepcopy(network).eval()
    for parameter in exported.parameters():
        parameter.requires_grad_(False)
    backbone = exported.backbone
    for name in STATIC_MODULES:
        module = getattr(backbone, name, None)
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            setattr(backbone, name, _script(module))
    return exported
