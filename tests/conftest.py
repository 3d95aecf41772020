import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
GRAPHNET_DATA = TEST_DATA / "graphnet"  # GraphNeT files, see tests/data/graphnet/NOTICE

# Keep test runs on the 2-core CI machine predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def graphnet_data() -> Path:
    """The GraphNeT test files kept in the repository (geometry tables and 5-event samples)."""
    return GRAPHNET_DATA
