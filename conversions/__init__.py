"""Raw XPCS HDF5 readers and the Zarr scan store (never imports daskxpcs)."""

from conversions.errors import InputError, RawFormatError, StoreError

__all__ = ["InputError", "RawFormatError", "StoreError"]
