"""``omaovi central pull``: the central office gathers the branches' daily figures into one CSV.

The Finnish annual public library statistics ask each library for its physical
visits and, separately, for the hours it was open as a self-service library, so
the CSV has those columns under plain names, one row per branch and local day,
and a spreadsheet can sum them per year. ``physical_visits_total`` is the
branch's ``physical_visits`` (people, by its people counter or with a card's
repeat taps counted once), not its granted taps, which come beside it. Each
branch serves its figures itself (``/api/v1/stats`` of ``omaovi web``,
docs/web-api.md); the branches are listed in a TOML file:

    [[branches]]
    id = "kallio"
    url = "https://kallio.kirjasto.example.fi:8080"
    token_file = "tokens/kallio.token"

Branches are asked in parallel. One that does not answer, or answers 5xx or 429,
is asked again a few times with backoff; one that refuses the token or the dates
is not, because asking again cannot help. Whatever happens to some branches, the
CSV holds every branch that answered, and the ones that did not are listed.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, TextIO

import requests

from device import stats_csv
from device.config import ConfigError, Problem, _base_url, _read, _Section, _text
from sync.central import SyncError, _exception_text, read_token

#: The CSV's columns: what the annual statistics ask for first, then the rest.
COLUMNS = (
    "branch", "period", "physical_visits_total", "granted_taps", "visits_staffed", "visits_self_service",
    "self_service_open_hours", "staffed_open_hours", "self_service_open_hours_planned", "staffed_open_hours_planned",
    "booth_uses", "booth_hours", "denied", "pin_lockouts",
)
#: Figures a branch of an older version does not send: their cells stay empty (unknown), never 0.
NEWER_FIGURES = ("physical_visits", "granted_taps", "self_service_open_hours_planned", "staffed_open_hours_planned",
                 "pin_lockouts")
#: The figures every branch sends, read from each period of its answer.
FIGURES = ("visits_staffed", "visits_self_service", "self_service_open_hours", "staffed_open_hours", "booth_uses",
           "booth_hours", "denied")
#: Seconds before the first retry; each later one waits twice as long (with jitter).
RETRY_BASE_SECONDS = 1.0
#: A year of days is about 150 kB of JSON; anything far larger is not a stats answer.
MAX_ANSWER_BYTES = 10_000_000
USER_AGENT = "omaovi-central-pull/1"
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class BranchSource:
    id: str
    url: str
    token_file: Path


class PullFailed(Exception):
    """One branch gave no usable answer; the message says why, for the final list."""


def load_branches(path: str | Path) -> list[BranchSource]:
    """The branches of a TOML file, or ConfigError naming the file, each wrong key and what is allowed."""
    path = Path(path)
    data = _read(path)
    problems: list[Problem] = []
    top = _Section(data, "", problems)
    tables = top.get("branches", _tables, "must be a list of [[branches]] tables, each with id, url and token_file")
    top.finish()
    sources: list[BranchSource] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(tables or []):
        s = _Section(table, f"branches[{index}].", problems)
        values = (
            s.identifier("id"),
            s.get("url", _base_url, 'must be the http:// or https:// address of the branch\'s staff page, such as "https://kallio.example.fi:8080"'),
            s.get("token_file", lambda v: (path.parent / _text(v)).resolve(), "must be a file path (relative paths are relative to this file)"),
        )
        s.finish()
        if None in values:
            continue
        if values[0] in first_index:
            problems.append(Problem(f"branches[{index}].id", values[0], f"must be unique; branches[{first_index[values[0]]}] has the same id"))
            continue
        first_index[values[0]] = index
        sources.append(BranchSource(*values))
    if tables == []:
        problems.append(Problem("branches", [], "must list at least one branch"))
    if problems:
        raise ConfigError(path, problems)
    return sources


def _tables(value: Any) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError
    return value


def fetch(
    source: BranchSource, start: date, end: date, *, timeout: float, attempts: int,
    sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[str, str, float], None] = lambda *_: None,
) -> list[dict]:
    """The branch's periods (one per local day), or PullFailed after the last attempt."""
    try:
        token = read_token(source.token_file)
    except SyncError as exc:
        raise PullFailed(str(exc)) from None
    url = f"{source.url}/api/v1/stats"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
    params = {"from": start.isoformat(), "to": end.isoformat(), "by": "day"}
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            with requests.get(url, params=params, headers=headers, timeout=timeout, stream=True, allow_redirects=False) as response:
                if response.status_code == 200:
                    return _periods(_read_body(response), url)
                problem = f"HTTP {response.status_code} from {url}"
                if response.status_code in (401, 403):
                    raise PullFailed(f"{problem}: the branch refused the token in {source.token_file}")
                if response.status_code not in _RETRY_STATUSES:
                    raise PullFailed(f"{problem}: {_error_message(response)}")
        except requests.RequestException as exc:
            problem = f"no answer from {url}: {_exception_text(exc)}"
        if attempt < attempts:
            wait = RETRY_BASE_SECONDS * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            on_retry(source.id, problem, wait)
            sleep(wait)
    raise PullFailed(f"{problem} (gave up after {attempts} attempts)")


def _read_body(response: requests.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_content(chunk_size=64 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise PullFailed(f"the answer from {response.url} passed {MAX_ANSWER_BYTES} bytes; it is not a stats answer")
    return bytes(body)


def _error_message(response: requests.Response) -> str:
    """The branch API's own words for a refusal (a JSON ``message``), else the start of the body."""
    text = _read_body(response).decode("utf-8", "replace")
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:200] or "(no body)"


def _periods(body: bytes, url: str) -> list[dict]:
    """The periods of a stats answer, each checked to have every figure as a number."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("periods"), list):
            raise TypeError("no list of periods")
        return [_period(item) for item in document["periods"]]
    except (ValueError, TypeError) as exc:
        raise PullFailed(f"the answer from {url} is not a stats answer: {exc}") from None


def _period(item: dict) -> dict:
    if not isinstance(item, dict) or not isinstance(item.get("period"), str):
        raise TypeError("a period without its name")
    figures = {name: item.get(name) for name in FIGURES} | {name: item.get(name, "") for name in NEWER_FIGURES}
    wrong = [name for name, value in figures.items()
             if not (isinstance(value, (int, float)) and not isinstance(value, bool)) and not (name in NEWER_FIGURES and value == "")]
    if wrong:
        raise TypeError(f"period {item['period']}: {', '.join(wrong)} missing or not a number")
    return {"period": item["period"], "physical_visits_total": figures.pop("physical_visits")} | figures


class Progress:
    """A bar redrawn in place on a terminal; on a log or a file, one line per finished branch."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30):
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self.done = self.failed = 0

    def finished(self, branch: str, problem: str | None) -> None:
        self.done += 1
        self.failed += problem is not None
        if self.tty:
            filled = self.width * self.done // max(self.total, 1)
            failed = f", {self.failed} failed" if self.failed else ""
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} branches{failed}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{branch}: {'failed' if problem else 'ok'} ({self.done}/{self.total})\n")
        self.stream.flush()

    def retrying(self, branch: str, problem: str, wait: float) -> None:
        if not self.tty:  # on a terminal the bar is enough; the final list says what failed
            self.stream.write(f"{branch}: {problem}; trying again in {wait:.1f} s\n")
            self.stream.flush()


def pull(
    sources: list[BranchSource], start: date, end: date, *, workers: int, attempts: int, timeout: float, progress: Progress,
) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Every branch's periods, and the problem of each branch that gave none."""
    periods: dict[str, list[dict]] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources)))) as pool:
        futures = {
            pool.submit(fetch, source, start, end, timeout=timeout, attempts=attempts, on_retry=progress.retrying): source
            for source in sources
        }
        for future in as_completed(futures):
            branch = futures[future].id
            try:
                periods[branch] = future.result()
            except PullFailed as exc:
                failures[branch] = str(exc)
            progress.finished(branch, failures.get(branch))
    return periods, failures


def write_csv(path: str | Path, sources: list[BranchSource], periods: dict[str, list[dict]], dialect: str = "rfc4180") -> int:
    """One row per branch and day, branches in the file's order; written whole or not at all."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    rows = [[source.id] + [period[name] for name in COLUMNS[1:]] for source in sources for period in periods.get(source.id, ())]
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        handle.write(stats_csv.write(COLUMNS, rows, dialect))
    os.replace(partial, path)
    return len(rows)
