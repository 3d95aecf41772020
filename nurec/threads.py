"""Torch's intra-op thread count, set for a block of work and restored afterwards.

Torch keeps one process-wide thread count; a method that changed it and left it would
slow (or speed) every later method in the same process, e.g. the GNN's timed run after
the CNN energy in ``nurec demo``. Methods take their thread count as an option and set
it only around their own work, through this context manager.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``threads`` (None: leave it), then restore it."""
    if not threads:
        yield
        return
    import torch  # lazily: importing nurec must not import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def current_torch_threads() -> int | None:
    """Return torch's thread count if torch is already imported (None otherwise; nothing is imported)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
