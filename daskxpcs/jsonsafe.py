"""Values made fit for strict JSON (files, Zarr attributes, fingerprints)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["json_safe"]


def json_safe(v: Any) -> Any:
    """A copy of ``v`` that strict JSON accepts.

    numpy scalars and arrays become Python numbers and lists, tuples lists, paths
    strings, and NaN / inf null (strict JSON readers reject them).
    """
    if hasattr(v, "item") and not isinstance(v, (str, bytes)) and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "tolist"):
        return json_safe(v.tolist())
    if isinstance(v, Path):
        return str(v)
    return v
