"""``omaovi central pull`` against real branch web apps served on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from admin_web import create_app, tokens
from device.cli import main
from device.store import Store
from sync import central_pull
from test_web_api import seed_monday
from webclient import write_branch


class Flaky:
    """Answers 503 to the first ``failures`` requests, then passes them to the app."""

    def __init__(self, app, failures: float):
        self.app, self.failures, self.requests = app, failures, 0

    def __call__(self, environ, start_response):
        self.requests += 1
        if self.requests <= self.failures:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"restarting"]
        return self.app(environ, start_response)


@pytest.fixture
def serve():
    """Serve a branch's app on 127.0.0.1 in a thread; every server is shut down after the test."""
    servers = []

    def start(directory: Path, failures: float = 0) -> tuple[str, str, Flaky]:
        directory.mkdir()
        config = write_branch(directory)
        app = Flaky(create_app(config, secret_key=b"s" * 32, testing=True), failures)
        store = Store(config.database)
        seed_monday(store)
        token = tokens.add(store, "central-office")
        store.close()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}", token, app

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join()


@pytest.fixture(autouse=True)
def quick_retries_straight_to_the_branches(monkeypatch):
    monkeypatch.setattr(central_pull, "RETRY_BASE_SECONDS", 0.01)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # no proxy from the environment between us and the test branches


def branches_file(directory: Path, branches: dict[str, tuple[str, str]]) -> Path:
    """A branches TOML with one token file per branch, as the central office keeps them."""
    lines = []
    for branch_id, (url, token) in branches.items():
        (directory / f"{branch_id}.token").write_text(token + "\n")
        lines += ["[[branches]]", f'id = "{branch_id}"', f'url = "{url}"', f'token_file = "{branch_id}.token"', ""]
    path = directory / "branches.toml"
    path.write_text("\n".join(lines))
    return path


def pull(path: Path, out: Path, *extra: str) -> int:
    return main(["central", "pull", "--branches", str(path), "--from", "2026-11-23", "--to", "2026-11-24", "--out", str(out), *extra])


def test_one_csv_from_many_branches_a_flaky_one_retried_a_dead_one_listed(tmp_path, serve, capsys):
    kallio_url, kallio_token, _ = serve(tmp_path / "kallio")
    vallila_url, vallila_token, vallila = serve(tmp_path / "vallila", failures=1)
    pasila_url, pasila_token, pasila = serve(tmp_path / "pasila", failures=float("inf"))
    path = branches_file(tmp_path, {
        "kallio": (kallio_url, kallio_token), "vallila": (vallila_url, vallila_token), "pasila": (pasila_url, pasila_token)})
    out = tmp_path / "stats.csv"

    assert pull(path, out) == 1

    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == list(central_pull.COLUMNS)
    assert [(r["branch"], r["period"]) for r in rows] == [
        ("kallio", "2026-11-23"), ("kallio", "2026-11-24"), ("vallila", "2026-11-23"), ("vallila", "2026-11-24")]
    monday = rows[0]
    # Physical visits, not taps: one card's three taps at 8.15 are one visit.
    assert (monday["physical_visits_total"], monday["granted_taps"], monday["pin_lockouts"]) == ("3", "5", "0")
    assert (monday["visits_staffed"], monday["visits_self_service"]) == ("2", "3")
    assert float(monday["self_service_open_hours"]) == 8 and float(monday["staffed_open_hours"]) == 6
    assert (monday["booth_uses"], float(monday["booth_hours"]), monday["denied"]) == ("1", 1.5, "3")
    assert vallila.requests == 2  # one 503, then the answer
    assert pasila.requests == 3  # the default attempts
    err = capsys.readouterr().err
    assert "pasila: HTTP 503" in err and "gave up after 3 attempts" in err
    assert "kallio" not in err.split("failed and are not in the file")[1]


def test_all_branches_answering_exits_zero_and_progress_suits_a_log(tmp_path, serve, capsys):
    url, token, _ = serve(tmp_path / "kallio")
    out = tmp_path / "stats.csv"
    assert pull(branches_file(tmp_path, {"kallio": (url, token)}), out) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "kallio: ok (1/1)" in captured.err  # pytest's stderr is not a terminal
    assert "Wrote 2 row(s) from 1 of 1 branch(es)" in captured.out


def test_a_refused_token_is_not_asked_again(tmp_path, serve, capsys):
    url, _, app = serve(tmp_path / "kallio")
    assert pull(branches_file(tmp_path, {"kallio": (url, "not-the-token")}), tmp_path / "stats.csv") == 1
    assert app.requests == 1
    assert "refused the token" in capsys.readouterr().err


def test_a_branch_nobody_listens_on_is_listed_as_failed(tmp_path, capsys):
    path = branches_file(tmp_path, {"kallio": ("http://127.0.0.1:9", "x" * 40)})
    assert pull(path, tmp_path / "stats.csv", "--attempts", "2", "--timeout", "2") == 1
    assert "cannot connect" in capsys.readouterr().err
    assert (tmp_path / "stats.csv").read_text().startswith("branch,period,physical_visits_total")


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = central_pull.Progress(2, stream, width=10)
    progress.retrying("kallio", "HTTP 503", 1.0)
    progress.finished("kallio", None)
    progress.finished("pasila", "HTTP 503")
    assert stream.getvalue() == "\r[#####.....] 1/2 branches\r[##########] 2/2 branches, 1 failed\n"


@pytest.mark.parametrize("content, expected", [
    ("", "branches = (missing): required"),
    ('[[branches]]\nid = "kallio"\nurl = "ftp://x"\ntoken_file = "t"\n', "branches[0].url = \"ftp://x\": must be the http:// or https://"),
    ('[[branches]]\nid = "Kallio Library"\nurl = "http://x"\ntoken_file = "t"\n', "branches[0].id"),
    ('[[branches]]\nid = "kallio"\nurl = "http://x"\n', "branches[0].token_file = (missing): required"),
    ('[[branches]]\nid = "kallio"\nurl = "http://x"\ntoken_file = "t"\nport = 8080\n', "branches[0].port = 8080: unknown key"),
    ('[[branches]]\nid = "a"\nurl = "http://x"\ntoken_file = "t"\n[[branches]]\nid = "a"\nurl = "http://y"\ntoken_file = "t"\n',
     "branches[1].id = \"a\": must be unique; branches[0] has the same id"),
    ("branches = []\n", "must list at least one branch"),
    ("[[branches]\n", "the file must be valid TOML"),
])
def test_a_wrong_branches_file_names_the_file_the_key_and_what_is_allowed(tmp_path, capsys, content, expected):
    path = tmp_path / "branches.toml"
    path.write_text(content)
    assert pull(path, tmp_path / "stats.csv") == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err
    assert not (tmp_path / "stats.csv").exists()


def test_dates_and_the_output_folder_are_checked_before_any_branch_is_asked(tmp_path, capsys):
    path = branches_file(tmp_path, {"kallio": ("http://127.0.0.1:9", "x" * 40)})
    out = tmp_path / "stats.csv"
    assert main(["central", "pull", "--branches", str(path), "--from", "2026-11-24", "--to", "2026-11-23", "--out", str(out)]) == 2
    assert main(["central", "pull", "--branches", str(path), "--from", "2020-01-01", "--to", "2026-11-23", "--out", str(out)]) == 2
    assert main(["central", "pull", "--branches", str(path), "--from", "2026-11-23", "--to", "2026-11-24",
                 "--out", str(tmp_path / "missing" / "stats.csv")]) == 2
    err = capsys.readouterr().err
    assert "before --from" in err and "at most 1096 days" in err and "there is no folder" in err
    assert not out.exists()


def test_the_excel_dialect_writes_what_the_staff_pages_csv_writes(tmp_path, serve):
    url, token, _ = serve(tmp_path / "kallio")
    out = tmp_path / "stats.csv"
    assert pull(branches_file(tmp_path, {"kallio": (url, token)}), out, "--dialect", "excel-fi") == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfbranch;period;physical_visits_total;") and b"\r\n" in raw
    monday = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))[0]
    assert (monday["booth_hours"], monday["self_service_open_hours"]) == ("1,5", "8")


def test_a_branch_of_an_older_version_leaves_the_figures_it_lacks_empty():
    old = {"period": "2026-11-23", "visits_staffed": 2, "visits_self_service": 3, "self_service_open_hours": 8.0,
           "staffed_open_hours": 6.0, "booth_uses": 1, "booth_hours": 1.5, "denied": 3}
    period = central_pull._periods(json.dumps({"periods": [old]}).encode(), "http://old")[0]
    assert (period["physical_visits_total"], period["granted_taps"], period["pin_lockouts"]) == ("", "", "")
    with pytest.raises(central_pull.PullFailed, match="physical_visits missing or not a number"):
        central_pull._periods(json.dumps({"periods": [old | {"physical_visits": "many"}]}).encode(), "http://odd")


def test_the_documented_csv_is_what_a_pull_writes(tmp_path, serve):
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "web-api.md").read_text(encoding="utf-8")
    documented = re.search(r"one row per branch and local day, branches in the file's order:\s*```csv\n(.*?)```", doc, re.S).group(1)
    url, token, _ = serve(tmp_path / "kallio")
    out = tmp_path / "stats.csv"
    assert pull(branches_file(tmp_path, {"kallio": (url, token)}), out) == 0
    assert out.read_text().replace("\r\n", "\n").splitlines()[:2] == documented.splitlines()
