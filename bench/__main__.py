"""``python -m bench`` (``make bench``): make the bench data, run the benchmarks, print
their figures and append them to docs/benchmarks.md. See docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .report import append_to_doc, load_average, machine_facts

BENCHMARKS = ("pages", "onboarding", "storm", "stir", "pyhss", "sipedge")
# Those that bring their own data (an enterprise of their own) and need no bench data.
OWN_DATA = {"pyhss", "sipedge"}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run, of {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--scale",
        choices=("full", "small"),
        default="full",
        help="full: 10,000 employees (the figures in the doc); small: a quick try",
    )
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the bench data of the last run at this scale instead of making it again",
    )
    parser.add_argument(
        "--no-doc", action="store_true", help="print the figures only; leave the doc as it is"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait (checking every 60 s, at most this long) until the 1-minute load "
        "average is below 1.0; the load at the start of each benchmark is recorded anyway",
    )
    parser.add_argument("--web-workers", type=int, default=5, help="gunicorn workers (default 5)")
    parser.add_argument(
        "--sync-concurrency",
        type=int,
        default=4,
        help="processes of the Celery worker on the sync queue (default 4)",
    )
    parser.add_argument(
        "--bulk-concurrency",
        type=int,
        default=4,
        help="processes of the Celery worker on the bulk queue, which runs an import and "
        "its identities' pushes (default 4)",
    )
    parser.add_argument(
        "--var-dir",
        default="var/bench",
        help="scratch folder: logs, collected static files, keys (default var/bench)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return args


def wait_until_idle(minutes: float) -> None:
    deadline = time.monotonic() + minutes * 60
    while (load := load_average()) >= 1.0 and time.monotonic() < deadline:
        print(f"load average {load:.2f} ≥ 1.0: waiting a minute", flush=True)
        time.sleep(60)
    print(f"load average {load_average():.2f}: starting", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.wait_idle:
        wait_until_idle(args.wait_idle)

    from .common import SCALES, collectstatic, make_context, make_data, migrate, reuse_data

    ctx = make_context(
        SCALES[args.scale],
        web_workers=args.web_workers,
        sync_concurrency=args.sync_concurrency,
        bulk_concurrency=args.bulk_concurrency,
        var_dir=Path(args.var_dir).resolve(),
    )
    started = time.monotonic()
    migrate()
    collectstatic(ctx)
    if set(args.only) <= OWN_DATA:
        pass
    elif not (args.reuse_data and reuse_data(ctx)):
        print(f"Making {args.scale}-scale bench data…", flush=True)
        data = make_data(ctx)
        print(f"  done in {data['seconds']:.0f} s: {data['enterprises']['bench-big']}", flush=True)
    machine = machine_facts()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)

    from . import onboarding, pages, pyhss, sipedge, stir, storm

    modules = {
        "pages": pages,
        "onboarding": onboarding,
        "storm": storm,
        "stir": stir,
        "pyhss": pyhss,
        "sipedge": sipedge,
    }
    reports, failed = [], []
    for name in args.only:
        print(f"\n=== {name} ===", flush=True)
        try:
            reports.append(modules[name].run(ctx))
        except Exception:  # noqa: BLE001 - one benchmark failing does not stop the others
            traceback.print_exc()
            failed.append(name)
    if reports and not args.no_doc:
        append_to_doc(reports, machine)
        print(f"\nAppended {len(reports)} result(s) to docs/benchmarks.md", flush=True)
    print(f"\nTotal {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
