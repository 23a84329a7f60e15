"""Physics models on plain numpy arrays (lmfit): KWW, heterogeneity, aging, tau(q), structure."""

from daskxpcs.models.aging import fit_aging
from daskxpcs.models.heterogeneity import chi4, delta_c, smallest_interval_width
from daskxpcs.models.kww import FIT_KEYS, fit_kww, fit_scan, kww_model
from daskxpcs.models.qdep import fit_qdep
from daskxpcs.models.structure import fine_profile, fit_linear, fit_q1, thermal_expansion

__all__ = [
    "FIT_KEYS",
    "chi4",
    "delta_c",
    "fine_profile",
    "fit_aging",
    "fit_kww",
    "fit_linear",
    "fit_q1",
    "fit_qdep",
    "fit_scan",
    "kww_model",
    "smallest_interval_width",
    "thermal_expansion",
]
