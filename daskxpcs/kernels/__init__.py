"""Correlation kernels on plain numpy arrays (numba and BLAS; no Dask)."""

from daskxpcs.kernels.dense import dense_frame_sums, dense_lag_sums, dense_products, pixel_major
from daskxpcs.kernels.diag import (
    TileLayout,
    bin_block,
    c_diag_stats,
    g2_from_sums,
    lag_index,
    lag_ladder,
    lag_range,
    normalise_bins,
    normalise_block,
    pixel_labels,
    tile_layout,
    window_edges,
)
from daskxpcs.kernels.events import compact_events, event_frame_sums, event_pairs, event_tile_stats
from daskxpcs.kernels.int8 import (
    ISAS,
    MAX_BIN_COLUMNS,
    MAX_COUNT,
    frame_major_shape,
    frame_major_u8,
    host_isas,
    int8_isa,
    int8_products,
    slab_columns,
)
from daskxpcs.kernels.partials import add_arrays, add_lag, add_num, lag_bin_stats

__all__ = [
    "ISAS", "MAX_BIN_COLUMNS", "MAX_COUNT", "TileLayout", "add_arrays", "add_lag", "add_num", "bin_block",
    "c_diag_stats", "compact_events", "dense_frame_sums", "dense_lag_sums", "dense_products", "event_frame_sums",
    "event_pairs", "event_tile_stats", "frame_major_shape", "frame_major_u8", "g2_from_sums", "host_isas", "int8_isa", "int8_products",
    "lag_bin_stats", "lag_index", "lag_ladder", "lag_range", "normalise_bins", "normalise_block", "pixel_labels",
    "pixel_major", "slab_columns", "tile_layout", "window_edges",
]
