"""Raw XPCS HDF5 readers and the Zarr scan store (never imports daskxpcs)."""

from conversions.errors import InputError, RawFormatError, StoreError
from conversions.store import ScanStore, open_scan_store, write_store_from_array

__all__ = [
    "InputError",
    "RawFormatError",
    "StoreError",
    "ScanStore",
    "open_scan_store",
    "write_store_from_array",
]
