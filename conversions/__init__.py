"""Raw XPCS HDF5 readers and the Zarr scan store (never imports daskxpcs)."""

from conversions.arrays import load_array
from conversions.convert import convert
from conversions.errors import InputError, RawFormatError, StoreError
from conversions.formats import RawScan, detect_format, open_raw
from conversions.store import ScanStore, open_scan_store, write_store_from_array

__all__ = [
    "InputError",
    "RawFormatError",
    "StoreError",
    "RawScan",
    "ScanStore",
    "convert",
    "detect_format",
    "load_array",
    "open_raw",
    "open_scan_store",
    "write_store_from_array",
]
