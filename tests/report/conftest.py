"""Fixtures for the report tests: a synthetic campaign output directory (see _report_synthetic)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _report_synthetic import build_output


@pytest.fixture(scope="session")
def synthetic_output(tmp_path_factory) -> Path:
    """A pristine synthetic output directory (do not modify; copy it first)."""
    return build_output(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="session")
def reported_output(synthetic_output, tmp_path_factory) -> Path:
    """A copy of the synthetic output directory after write_report (shared by read-only tests)."""
    from daskxpcs.report import write_report

    root = tmp_path_factory.mktemp("reported")
    shutil.copytree(synthetic_output.parent, root, dirs_exist_ok=True)
    write_report(root / "out")
    return root / "out"
