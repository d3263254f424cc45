"""``bench/run --docs``: each table in docs/performance.md is replaced only by a run that measured it."""

import json
from dataclasses import asdict

from bench.report import Figure, update_docs

DOCS = """# Performance
<!-- results -->
the branch's old table
<!-- /results -->
text between
<!-- central-results -->
the central service's old table
<!-- /central-results -->
"""


def _results(tmp_path, *figures: Figure):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({
        "date": "2026-12-06T04:00:00+00:00", "mode": "full", "load_average": {"start": 1.0, "end": 2.0},
        "machine": {"host": "box", "cpu": "cpu", "cores": 2, "memory_mb": 1024, "system": "Linux", "python": "3.11"},
        "figures": {f.id: asdict(f) for f in figures},
    }))
    return path


def _docs_after_run(tmp_path, figure: Figure) -> str:
    """The page after ``bench/run --docs`` with a results file of ``figure`` alone."""
    docs = tmp_path / "performance.md"
    docs.write_text(DOCS)
    update_docs(docs, _results(tmp_path, figure))
    return docs.read_text()


def test_a_run_of_the_central_figures_only_leaves_the_branch_table_alone(tmp_path):
    text = _docs_after_run(tmp_path, Figure("C1 SQLite", "sync rounds", "p95 <= 100 ms", "p95 12 ms", True))
    assert "the branch's old table" in text
    assert "the central service's old table" not in text
    assert "| C1 SQLite | sync rounds | p95 12 ms | p95 <= 100 ms |  | yes |" in text
    assert text.index("text between") < text.index("C1 SQLite")


def test_a_run_of_the_branch_figures_only_leaves_the_central_table_alone(tmp_path):
    text = _docs_after_run(tmp_path, Figure("P1", "tap", "p99 <= 10 ms", "p99 2 ms", True))
    assert "the central service's old table" in text
    assert "the branch's old table" not in text
    assert text.index("| P1 | tap |") < text.index("text between")
