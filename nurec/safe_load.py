"""Reading learned artifacts without running code from them: torch weights-only loads, one-line errors.

``torch.load(weights_only=True)`` unpickles with an allow-list: tensors, storages and
plain containers/numbers/strings. Any other global, such as the callable of a
``__reduce__`` payload, stops the load before it is called. pyproject.toml requires a
torch without the known holes in that reader (fixed in 2.6 and 2.10). Errors never
suggest ``weights_only=False``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any


class WeightsFileError(ValueError):
    """A file that is not a weights-only torch file; one line naming the file."""


def one_line(text: object, limit: int = 200) -> str:
    """Return ``text`` on one line (whitespace runs collapsed), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _reason(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:
        # torch's message wraps the reason in advice to load unsafely; keep the reason only.
        text = text.split("WeightsUnpickler error:", 1)[1]
        for stop in ("Please use", "Check the documentation"):
            text = text.split(stop, 1)[0]
    return one_line(text) or type(err).__name__


def read_weights(path: str | os.PathLike) -> Any:
    """Return the object in a torch file, read weights-only on the CPU; WeightsFileError otherwise."""
    import torch  # here: modules that only need one_line do not import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the error below says what matters
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (a refused global), RuntimeError (not a torch zip), EOFError, ...
        raise WeightsFileError(f"{path}: refused, not a weights-only torch file ({_reason(err)})") from None
