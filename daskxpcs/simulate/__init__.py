"""Synthetic XPCS campaigns with ground truth, written in every supported raw format.

Public API: `simulate_campaign` (manifest + truth + raw files), `simulate_scan` (one scan
in memory), `iter_scan_blocks` (a scan streamed in frame blocks), `ScanSpec`,
`make_detector` / `Detector`, the writers `write_lima`, `write_bliss`, `write_eiger`,
`write_lima2_sparse` (and `read_frames` to read them back with plain h5py).
"""

from daskxpcs.simulate.campaign import PRESETS, simulate_campaign
from daskxpcs.simulate.geometry import Detector, make_detector
from daskxpcs.simulate.scan import (
    ScanSpec,
    expected_g2,
    iter_scan_blocks,
    scan_truth,
    simulate_scan,
    time_grid,
)
from daskxpcs.simulate.writers import read_frames, write_bliss, write_eiger, write_lima, write_lima2_sparse

__all__ = [
    "PRESETS",
    "simulate_campaign",
    "Detector",
    "make_detector",
    "ScanSpec",
    "expected_g2",
    "iter_scan_blocks",
    "scan_truth",
    "simulate_scan",
    "time_grid",
    "read_frames",
    "write_bliss",
    "write_eiger",
    "write_lima",
    "write_lima2_sparse",
]
