"""``python -m bench [--quick] [--only P1,P4]``: measure, print the table, write results.json."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import report
from bench.report import Figure
from bench.workspace import FULL, QUICK, REPO, Workspace

#: Figure id -> module, in the order a branch lives through them (P3 then P4 share the central).
FIGURES = {
    "P1": "bench.p1_tap",
    "P2": "bench.p2_sip2_down",
    "P3": "bench.p3_snapshot",
    "P4": "bench.p4_delta",
    "P5": "bench.p5_stats",
    "P6": "bench.p6_web",
    "P7": "bench.p7_idle",
    "P8": "bench.p8_push",
    "P9": "bench.p9_pi_budget",
    "P10": "bench.p10_csv_import",
    # The central service (central/), each on SQLite and on PostgreSQL: one figure per engine.
    "C1": "bench.c1_branch_sync",
    "C2": "bench.c2_central_snapshot",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny data and short runs: shows the benchmarks work, measures nothing")
    parser.add_argument("--only", help="comma-separated figure ids, such as P1,P4")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench" / "data", help="where built data is cached")
    parser.add_argument("--docs", action="store_true", help="only put the table of --out into docs/performance.md")
    args = parser.parse_args(argv)
    if args.docs:
        report.update_docs(REPO / "docs" / "performance.md", args.out)
        return 0
    chosen = [f.strip().upper() for f in args.only.split(",")] if args.only else list(FIGURES)
    unknown = [f for f in chosen if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    scale = QUICK if args.quick else FULL
    # P2 and P8 play outages on purpose; their warnings would bury the table.
    logging.basicConfig(level=logging.ERROR, format="bench: %(name)s: %(message)s")
    started = datetime.now(timezone.utc)
    load_at_start = os.getloadavg()[0]
    workspace = Workspace(scale, args.data_dir)
    figures: list[Figure] = []
    try:
        for figure_id in FIGURES:
            if figure_id in chosen:
                figures += _measure(figure_id, workspace)
    finally:
        workspace.close()
    report.write(args.out, scale.name, figures, started, load_at_start)
    print(report.table(figures))
    print(f"\n{scale.name} run, {started:%Y-%m-%d %H:%M} UTC; every figure in {args.out}")
    return 1 if any(f.error for f in figures) else 0


def _measure(figure_id: str, workspace: Workspace) -> list[Figure]:
    """A figure that crashes is reported as an error; the others still run.

    A benchmark hands back one figure, or several (the central ones: one per engine)."""
    module = importlib.import_module(FIGURES[figure_id])
    started = time.monotonic()
    print(f"bench: {figure_id} ...", file=sys.stderr, flush=True)
    try:
        figure = module.run(workspace)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
        traceback.print_exc()
        figure = Figure(figure_id, figure_id, "", error=f"{type(exc).__name__}: {exc}", passed=False)
    figures = figure if isinstance(figure, list) else [figure]
    for each in figures:
        each.values.setdefault("seconds_taken", round(time.monotonic() - started, 1))
    return figures


if __name__ == "__main__":
    sys.exit(main())
