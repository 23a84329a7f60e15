"""Shared fixtures. Paths to the independent format fixtures live in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba-cache"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FORMAT_FIXTURES = SHARED / "fixtures" / "formats"


@pytest.fixture(scope="session")
def format_fixtures() -> Path:
    if not FORMAT_FIXTURES.exists():
        pytest.skip(f"format fixtures not found at {FORMAT_FIXTURES}")
    return FORMAT_FIXTURES


@pytest.fixture
def without_int8(monkeypatch):
    """The dense engine as on a CPU without byte kernels: BLAS products only."""
    from daskxpcs.kernels import int8_isa

    monkeypatch.setenv("DASKXPCS_INT8", "0")
    int8_isa.cache_clear()
    yield
    monkeypatch.undo()
    int8_isa.cache_clear()
