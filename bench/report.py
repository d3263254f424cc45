"""What a benchmark hands back, the table printed at the end and ``results.json``."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class Figure:
    id: str
    what: str
    target: str
    #: The headline, as the table shows it.
    result: str = ""
    #: True or False against the target; None when it was not measured.
    passed: bool | None = None
    #: Every number behind the headline.
    values: dict = field(default_factory=dict)
    #: What the ratio is taken against, measured in the same run.
    baseline: str = ""
    ratio: float | None = None
    error: str | None = None


def machine() -> dict:
    """Enough to tell a Pi 4 from a laptop when comparing two results files."""
    return {
        "host": platform.node(),
        "arch": platform.machine(),
        "system": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def table(figures: list[Figure]) -> str:
    rows = [("id", "what", "result", "target", "vs baseline", "ok")]
    for f in figures:
        ok = "-" if f.passed is None else ("yes" if f.passed else "NO")
        versus = f"{f.ratio}x {f.baseline}" if f.ratio is not None else ""
        result = f"error: {f.error}" if f.error else f.result
        rows.append((f.id, f.what, result, f.target, versus, ok))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(path: Path, mode: str, figures: list[Figure], started: datetime, load_at_start: float) -> None:
    """``load_average``: other work on the machine, which the absolute figures carry and the ratios less so."""
    document = {
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": machine(),
        "load_average": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        "figures": {f.id: asdict(f) for f in figures},
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


#: The marked blocks of docs/performance.md and which figures each holds: the central
#: service's (C1, C2) have a table of their own, so that a run of only those, or only
#: the branch's, leaves the other table as it was.
_BLOCKS = {"results": lambda figure_id: not figure_id.startswith("C"), "central-results": lambda figure_id: figure_id.startswith("C")}


def update_docs(path: Path, results: Path) -> None:
    """Put the tables of a results file into ``path`` between its ``<!-- results -->`` and
    ``<!-- central-results -->`` markers; a block with no figure in the file stays as it is."""
    document = json.loads(results.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    for marker, belongs in _BLOCKS.items():
        figures = [f for f in document["figures"].values() if belongs(f["id"])]
        if figures:
            block = re.compile(rf"<!-- {marker} -->.*?<!-- /{marker} -->|<!-- {marker} -->", re.DOTALL)
            text = block.sub(lambda _: _table(marker, document, figures), text, count=1)
    path.write_text(text, encoding="utf-8")


def _table(marker: str, document: dict, figures: list[dict]) -> str:
    box = document["machine"]
    lines = [
        f"<!-- {marker} -->",
        f"Measured {document['date'][:16].replace('T', ' ')} UTC ({document['mode']} run) on {box['host']}: "
        f"{box['cpu']}, {box['cores']} cores, {box['memory_mb']} MB, {box['system']}, Python {box['python']}; "
        f"load average {document['load_average']['start']} at the start, {document['load_average']['end']} at the end.",
        "",
        "| id | what | result | target | vs baseline | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        result = f"error: {f['error']}" if f["error"] else f["result"]
        versus = f"{f['ratio']}x {f['baseline']}" if f["ratio"] is not None else ""
        met = "-" if f["passed"] is None else ("yes" if f["passed"] else "**no**")
        lines.append(f"| {f['id']} | {f['what']} | {result} | {f['target']} | {versus} | {met} |")
    lines.append(f"<!-- /{marker} -->")
    return "\n".join(lines)
