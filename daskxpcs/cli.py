"""Command line: parses arguments and calls the library. No logic lives here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

SCHEDULER_HELP = (
    "threads (default), processes, synchronous, local:N, tcp://HOST:PORT, "
    "tls://HOST:PORT, scheduler-file:PATH or slurm:FILE.yaml"
)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="daskxpcs", description=__doc__)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="simulate a small two-sample campaign, run it, report")
    d.add_argument("--out", type=Path, default=Path("demo-output"))
    d.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)

    s = sub.add_parser("simulate", help="write a synthetic campaign with its ground truth")
    s.add_argument("outdir", type=Path)
    s.add_argument("--preset", default="small", help="small (default), demo, tiny or archive")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--generator", default="exact", choices=["exact", "renewal"],
                   help="exact KWW speckle (default), or renewal: O(photons), exact for beta = 1 only")

    c = sub.add_parser("convert", help="convert a raw HDF5 scan into a Zarr scan store")
    c.add_argument("raw", type=Path)
    c.add_argument("store", type=Path)
    c.add_argument("--qmap", help="q per pixel in 1/A: Q.npy or FILE.h5:/dataset")
    c.add_argument("--q-edges", type=_floats)
    c.add_argument("--mask", help="bad-pixel mask (nonzero = bad): M.npy or FILE.h5:/dataset")
    c.add_argument("--frame-time", type=float, help="frame period in s when the file has none")
    c.add_argument("--entry", help="scan entry of a Bliss master file, e.g. 3.1")
    c.add_argument("--layout", default="auto", choices=["auto", "dense", "events"])
    c.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)

    r = sub.add_parser("correlate", help="one scan's ttcf, g2, g2_err, lag_s")
    r.add_argument("store", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--qmap")
    r.add_argument("--q-edges", type=_floats)
    r.add_argument("--engine", default="auto", choices=["auto", "events", "dense"])
    r.add_argument("--ttcf-bin", type=int, default=1)
    r.add_argument("--t-block", type=int)
    r.add_argument("--p-tile", type=int)
    r.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)

    m = sub.add_parser("run", help="process a campaign manifest")
    m.add_argument("manifest", type=Path)
    m.add_argument("--out", type=Path)
    m.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)
    m.add_argument("--plan", action="store_true", help="dry run: print sizes, memory and time")
    m.add_argument("--engine", default="auto", choices=["auto", "events", "dense"])
    m.add_argument("--ttcf-bin", type=int, default=1)
    m.add_argument("--max-tw", type=float, help="leave scans with t_w beyond this (s) out of aging fits")
    m.add_argument("--max-in-flight", type=int, default=2, help="scans processed at once")
    m.add_argument("--no-report", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from conversions.errors import InputError

    args = build_parser().parse_args(argv)
    if args.version:
        from daskxpcs import __version__

        print(__version__)
        return 0
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return _dispatch(args)
    except InputError as exc:
        print(f"daskxpcs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from daskxpcs.demo import run_demo

        return run_demo(args.out, scheduler=args.scheduler)
    if args.command == "simulate":
        from daskxpcs.simulate import simulate_campaign

        manifest = simulate_campaign(args.outdir, preset=args.preset, seed=args.seed, method=args.generator)
        print(f"campaign manifest: {manifest}")
        return 0
    if args.command == "convert":
        from conversions.arrays import load_array
        from conversions.convert import convert
        from daskxpcs.cluster import scheduler_context

        with scheduler_context(args.scheduler) as handle:
            store = convert(
                args.raw,
                args.store,
                qmap=load_array(args.qmap, key="--qmap") if args.qmap else None,
                q_edges=args.q_edges,
                mask=load_array(args.mask, key="--mask") if args.mask else None,
                frame_time_s=args.frame_time,
                entry=args.entry,
                layout=args.layout,
                scheduler=handle.scheduler,
                progress=True,
            )
        print(store.summary())
        return 0
    if args.command == "correlate":
        from conversions.arrays import load_array
        from daskxpcs.correlate import correlate_scan

        timings = correlate_scan(
            args.store,
            args.out,
            qmap=load_array(args.qmap, key="--qmap") if args.qmap else None,
            q_edges=args.q_edges,
            engine=args.engine,
            t_block=args.t_block,
            p_tile=args.p_tile,
            ttcf_bin=args.ttcf_bin,
            scheduler=args.scheduler,
            progress=True,
        )
        print(" ".join(f"{k}={v:.3f}s" if isinstance(v, float) else f"{k}={v}" for k, v in timings.items()))
        return 0
    if args.command == "run":
        from daskxpcs.campaign import run_campaign

        return run_campaign(
            args.manifest,
            out=args.out,
            scheduler=args.scheduler,
            plan=args.plan,
            engine=args.engine,
            ttcf_bin=args.ttcf_bin,
            max_tw_s=args.max_tw,
            max_in_flight=args.max_in_flight,
            report=not args.no_report,
        )
    raise AssertionError(args.command)


def entry() -> None:
    """Console-script entry point: run :func:`main`, then leave without interpreter teardown.

    Every output is written and closed when ``main`` returns (clusters too, by their
    context managers); the teardown of numba, zarr and dask that ``sys.exit`` would
    run costs 0.3 to 0.5 s on 2 cores and keeps nothing.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
