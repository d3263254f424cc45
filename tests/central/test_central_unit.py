"""The central service's systemd unit: valid, hardened, and its ExecStart runs a command that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "omaovi-central.service"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: ./dev test installs it (apt package systemd)"
    return tool


def _installed(tmp_path: Path) -> Path:
    """The unit as installed beside this checkout's omaovi, so verify can find ExecStart's program."""
    omaovi = Path(sys.executable).with_name("omaovi")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/omaovi/venv/bin/omaovi", str(omaovi)))
    return unit


def test_the_unit_runs_omaovi_central_serve_as_a_notify_service():
    text = UNIT.read_text()
    assert "ExecStart=/opt/omaovi/venv/bin/omaovi central serve --config /etc/omaovi/central.toml" in text
    assert "Type=notify" in text and "RestartPreventExitStatus=2" in text


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    result = subprocess.run([_analyze(), "verify", str(_installed(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path):
    result = subprocess.run([_analyze(), "security", "--offline=true", str(_installed(tmp_path))], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) < 2.0 and match.group(2) == "OK", match.group(0)


def test_the_migrations_and_the_model_agree(database_url):
    """The queries use central/schema.py, the database is made by the migrations: they must describe one schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from central import db
    from central.schema import metadata

    engine = db.open_engine(database_url)
    try:
        db.migrate(engine)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()
