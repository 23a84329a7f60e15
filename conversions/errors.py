"""Errors raised on bad input; each message names the file, dataset or key."""

from __future__ import annotations


class InputError(Exception):
    """Base class for bad user input (files, datasets, manifests).

    The command line prints the message on one line and exits non-zero.
    """


class RawFormatError(InputError):
    """A raw HDF5 file that cannot be read as one of the supported layouts.

    Parameters
    ----------
    path : str
        The offending file.
    dataset : str or None
        The HDF5 dataset path involved, where one is.
    message : str
        What is wrong.
    """

    def __init__(self, path, dataset, message: str):
        self.path = str(path)
        self.dataset = dataset
        where = f"{self.path}:{dataset}" if dataset else self.path
        super().__init__(f"{where}: {message}")


class StoreError(InputError):
    """A Zarr scan store that is missing, incomplete or inconsistent."""
