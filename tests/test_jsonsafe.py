import json
import math
from pathlib import Path

import numpy as np

from daskxpcs.jsonsafe import json_safe


def test_strict_json_values():
    v = {"a": np.float32(1.5), 2: (np.int64(3), math.nan), "b": np.array([1.0, np.inf]),
         "c": np.bool_(True), "p": Path("/x/y"), "z": np.float64(-math.inf)}
    out = json_safe(v)
    assert out == {"a": 1.5, "2": [3, None], "b": [1.0, None], "c": True, "p": "/x/y", "z": None}
    assert type(out["2"][0]) is int and type(out["c"]) is bool
    json.dumps(out, allow_nan=False)
