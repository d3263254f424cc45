"""The benchmarks still run: ``python -m bench --quick`` end to end, with no timing asserted.

The figures themselves are measured by hand (docs/performance.md); on a loaded CI
machine they would only make this test flaky.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = [f"P{n}" for n in range(1, 10)]


def test_quick_benchmarks_run_and_report_every_figure(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=os.environ | {"GPIOZERO_PIN_FACTORY": "mock"}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert sorted(results["figures"]) == FIGURES
    assert results["mode"] == "quick" and results["machine"]["cores"]
    for figure in results["figures"].values():
        assert figure["error"] is None
        assert figure["result"]
