"""Dask graphs of the correlation (no numerics): tasks, reduction trees, Zarr output."""

from daskxpcs.graph.correlate import CorrelationPlan, build_graph, plan_correlation
from daskxpcs.graph.reduce import tree_reduce

__all__ = ["CorrelationPlan", "build_graph", "plan_correlation", "tree_reduce"]
