"""Limits on names that callers send (detector, model): refused past a length, never echoed in full.

A name is echoed in error messages; without a limit a 10 MB detector name made a 20 MB
response. 256 bytes is far above any real name and below any message worth sending back.
"""

from __future__ import annotations

MAX_NAME_BYTES = 256


def name_problem(name: str) -> str | None:
    """Return why ``name`` is refused (a one-line reason without the name), or None if it is fine."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"name of {size} bytes exceeds the limit of {MAX_NAME_BYTES} bytes"
    return None
