"""daskxpcs: XPCS campaign analysis on Dask."""

__version__ = "0.1.0"
