"""Local scheduler helpers: get functions without the client lookup, a prompt progress bar."""

import io
import subprocess
import sys
import time

import dask
import numpy as np
import pytest

from conversions.scheduling import LOCAL_SCHEDULERS, _PromptBar, local_get


@pytest.mark.parametrize("name", LOCAL_SCHEDULERS)
def test_local_get_computes_the_same(name):
    x = dask.delayed(np.arange)(5)
    total = dask.delayed(np.sum)(x)
    assert dask.compute(total, scheduler=local_get(name))[0] == 10


def test_other_schedulers_pass_through():
    client_like = object()
    assert local_get(client_like) is client_like
    assert local_get(None) is None
    assert local_get("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"


def test_threads_get_does_not_import_distributed():
    code = ("import sys, dask; from conversions.scheduling import local_get; "
            "dask.compute(dask.delayed(sum)([1, 2]), scheduler=local_get('threads')); "
            "print('distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prompt_bar_ends_with_the_computation():
    # Dask's own bar sleeps dt between redraws and joins its timer: 30 s here
    out = io.StringIO()
    t0 = time.perf_counter()
    with _PromptBar(out=out, dt=30.0, minimum=0.0):
        assert dask.compute(dask.delayed(sum)([1, 2]), scheduler="threads")[0] == 3
    assert time.perf_counter() - t0 < 10.0
    assert "100%" in out.getvalue()
