"""What every experiment reader shares: its error type and the record builder for its columns."""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np


class SourceError(ValueError):
    """A source file cannot be read as its format; the message names the file and what is wrong."""


def zip_columns(columns: dict[str, Any]) -> ak.Array:
    """Return a record array of equal-length columns (numpy columns made contiguous for Arrow)."""
    return ak.zip({k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v for k, v in columns.items()},
                  depth_limit=1)
