"""P10: ``omaovi patrons import`` of a large patron CSV, and what memory it takes.

The import reads its file a chunk of rows at a time (sync/patrons_csv.py), so its
peak RSS should not grow with the file: it is measured for a quarter of the file
and for the whole. The baseline is the least any import could hold: a bare Python
process reading the same file with the csv module and keeping nothing.
"""

from __future__ import annotations

import subprocess
import sys

from bench.procs import Child
from bench.report import Figure
from bench.workspace import REPO
from device.store import Store

#: The documented biggest file: 32 MB, about 800,000 patrons.
MAX_ROWS = 800_000
RSS_MB = 100
#: A whole file may take this much more than a quarter of it, and still count as the same.
GROWTH_MB = 10
GIVE_UP_SECONDS = 900
_ROW = b"%014d,1,,2099-12-31,2000-01-01,0\n"
_BARE = "import csv, sys\nfor _ in csv.reader(open(sys.argv[1], newline='', encoding='utf-8')): pass\n"


def run(ws) -> Figure:
    figure = Figure("P10", "patron CSV import", f"peak RSS <= {RSS_MB} MB, a whole file within {GROWTH_MB} MB of a quarter")
    rows = min(ws.scale.patrons, MAX_ROWS)
    quarter, whole = ws.dir / "p9-quarter.csv", ws.dir / "p9-whole.csv"
    _write_csv(quarter, rows // 4)
    _write_csv(whole, rows)
    config = ws.config_file(ws.dir / "p9.db")
    small = _import(config, quarter)
    big = _import(config, whole)
    bare = Child([sys.executable, "-c", _BARE, str(whole)], stdout=subprocess.DEVNULL).wait(GIVE_UP_SECONDS)
    store = Store(ws.dir / "p9.db")
    imported = store.patron_count()
    store.close()
    figure.values = {
        "rows": rows, "file_mb": round(whole.stat().st_size / 2**20, 1),
        "seconds": round(big.seconds, 2), "cpu_seconds": round(big.cpu_seconds, 2),
        "peak_rss_mb": round(big.peak_rss_mb, 1), "quarter_peak_rss_mb": round(small.peak_rss_mb, 1),
        "exit_codes": [small.returncode, big.returncode], "patrons_after": imported,
        "baseline_bare_read_peak_rss_mb": round(bare.peak_rss_mb, 1),
    }
    figure.baseline = "a bare Python reading the same file with the csv module (peak RSS)"
    figure.ratio = round(big.peak_rss_mb / bare.peak_rss_mb, 2) if bare.peak_rss_mb else None
    figure.result = (f"{whole.stat().st_size / 2**20:.1f} MB ({rows:,} rows) in {big.seconds:.1f} s, "
                     f"peak RSS {big.peak_rss_mb:.0f} MB (a quarter of it: {small.peak_rss_mb:.0f} MB)")
    figure.passed = (
        small.returncode == big.returncode == 0 and imported == rows
        and big.peak_rss_mb <= RSS_MB and big.peak_rss_mb <= small.peak_rss_mb + GROWTH_MB
    )
    return figure


def _write_csv(path, rows: int) -> None:
    with path.open("wb") as out:
        out.write(b"card_number,self_service,blocked_reason,valid_until,age_ok_from,staff\n")
        for start in range(0, rows, 10_000):
            out.write(b"".join(_ROW % (27_000_000_000_000 + n) for n in range(start, min(rows, start + 10_000))))


def _import(config, path):
    """``omaovi patrons import --replace``, as a nightly timer job runs it."""
    child = Child([sys.executable, "-m", "device.cli", "patrons", "import", "--replace", str(path), "-c", str(config)],
                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child.wait(GIVE_UP_SECONDS)
