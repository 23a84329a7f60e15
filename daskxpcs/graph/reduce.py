"""Binary reduction trees of Dask delayed values (no numerics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dask.delayed import Delayed, delayed

__all__ = ["tree_reduce"]


def tree_reduce(items: Sequence[Delayed], combine: Callable, name: str) -> Delayed:
    """Reduce ``items`` pairwise, ``combine(a, b)`` per node, depth ceil(log2(n)).

    Neighbours are combined first, so order ``items`` with related partials adjacent.
    ``combine`` may update its first argument in place: each partial feeds one node.

    Parameters
    ----------
    items : non-empty sequence of Delayed
    combine : binary function returning the combined value
    name : key prefix of the tree's tasks (unique per graph)
    """
    if not items:
        raise ValueError(f"{name}: nothing to reduce")
    level = list(items)
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nxt.append(delayed(combine, pure=True)(level[i], level[i + 1], dask_key_name=f"{name}-d{depth}-{i // 2}"))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        depth += 1
    return level[0]
