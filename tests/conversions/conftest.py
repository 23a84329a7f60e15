"""Fixtures of the conversion tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def expected(format_fixtures):
    e = np.load(format_fixtures / "expected.npz")
    return {"counts": e["counts"], "bad": e["mask"] != 0, "frame_time": float(e["frame_time"])}
