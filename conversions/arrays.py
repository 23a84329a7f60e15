"""Frame-shaped arrays given by the user (q-maps, masks): "X.npy" or "file.h5:/path"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conversions.errors import InputError


def load_array(spec: str | Path, key: str) -> np.ndarray:
    """Load an array from ``X.npy`` or ``FILE.h5:/dataset``.

    Parameters
    ----------
    spec : the file (and dataset) as the user wrote it.
    key : what the array is for (manifest key or option), named in errors.

    Raises
    ------
    InputError
        Naming ``key`` and the file when it is missing or unreadable.
    """
    text = str(spec)
    file, sep, name = text.partition(":") if ".h5:" in text or ".hdf5:" in text \
        or ".nxs:" in text else (text, "", "")
    path = Path(file)
    if not path.exists():
        raise InputError(f"{key}: no such file {file}")
    if sep:
        import h5py
        import hdf5plugin  # noqa: F401

        try:
            with h5py.File(path, "r") as f:
                obj = f.get(name)
                if obj is None or not hasattr(obj, "shape"):
                    raise InputError(f"{key}: {file} has no dataset {name}")
                arr = obj[()]
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(f"{key}: cannot read {file}:{name} ({exc})") from exc
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{key}: cannot read {file} as a .npy array ({exc})") from exc
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise InputError(f"{key}: {text} must be a 2-D numeric array, got "
                         f"{arr.dtype} of shape {arr.shape}")
    return arr
