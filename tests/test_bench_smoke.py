"""The benchmarks still run: ``python -m bench --quick`` end to end, with no timing asserted.

The figures themselves are measured by hand (docs/performance.md); on a loaded CI
machine they would only make this test flaky. The central service's figures (C1,
C2) run the real ``omaovi central serve`` on SQLite and on a private PostgreSQL
server, so they must also show that the service did the work they time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.central_load import EVENTS_PER_BATCH

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("SQLite", "PostgreSQL")
FIGURES = [f"P{n}" for n in range(1, 11)] + [f"{c} {engine}" for c in ("C1", "C2") for engine in ENGINES]


def test_quick_benchmarks_run_and_report_every_figure(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=os.environ | {"GPIOZERO_PIN_FACTORY": "mock"}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert sorted(results["figures"]) == sorted(FIGURES)
    assert results["mode"] == "quick" and results["machine"]["cores"]
    for figure in results["figures"].values():
        assert figure["error"] is None
        assert figure["result"]
    # P9's taps ran inside the CPU budget while the staff web was loaded and the snapshot came in.
    pi = results["figures"]["P9"]["values"]
    assert pi["budget"]["periods"] > 0 and pi["taps"]["n"] > 0 and pi["baseline_sqlite"]["n"] == pi["taps"]["n"]
    assert pi["staff_requests_during_taps"] > 0 and pi["snapshot_pages_during_taps"] == pi["snapshot_pages"]
    assert pi["sync_exit_code"] == 0 and pi["patrons_after"] == pi["patrons"]
    for engine in ENGINES:
        sync_rounds = results["figures"][f"C1 {engine}"]["values"]
        assert sync_rounds["errors"] == 0, sync_rounds["first_errors"]
        assert sync_rounds["events_sent"] == sync_rounds["branches"] * EVENTS_PER_BATCH * sync_rounds["rounds"]
        assert sync_rounds["events_stored"] == sync_rounds["events_sent"]
        assert sync_rounds["requests"]["n"] >= 3 * sync_rounds["branches"] * sync_rounds["rounds"]
        assert sync_rounds["baseline_trivial_wsgi"]["requests"]["n"] == 3 * sync_rounds["branches"] * sync_rounds["rounds"]
        assert sync_rounds["cpu_seconds_per_round"]["service"] > 0
        snapshot = results["figures"][f"C2 {engine}"]["values"]
        assert snapshot["complete_and_in_order"] and snapshot["patrons_received"] == snapshot["patrons"]
        assert snapshot["baseline_bare_select"]["rows"] == snapshot["patrons"]
    # On PostgreSQL part of the service's work is done by the database server's processes.
    assert results["figures"]["C1 PostgreSQL"]["values"]["cpu_seconds_per_round"]["database"] > 0
