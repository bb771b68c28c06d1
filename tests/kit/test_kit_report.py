"""A failing test shows the output tail of every process the kit runs, so causes are visible."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kit.procs import ROOT, child_env

STUB = Path(__file__).with_name("stub_service.py")

FAILING_TEST = f"""
import sys
from pathlib import Path
from kit.procs import start_service

def test_fails_while_a_service_runs(kit_workdir: Path):
    start_service("stub", argv=[sys.executable, {str(STUB)!r}], env={{}},
                  log_dir=kit_workdir / "logs")
    assert False, "the service answered wrongly"
"""


def test_a_failing_test_reports_each_running_process_log_tail_and_keeps_the_logs(
    tmp_path: Path,
):
    (tmp_path / "test_inner.py").write_text(FAILING_TEST)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "kit.testing",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=child_env({"PYTHONPATH": str(ROOT)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "stub pid" in result.stdout and "(running) log tail" in result.stdout
    assert "stub: listening on" in result.stdout
    kept = [line for line in result.stdout.splitlines() if "process logs kept in" in line]
    assert kept, result.stdout
    workdir = Path(kept[0].rsplit(" ", 1)[1])
    try:
        assert list((workdir / "logs").glob("stub-*.log"))
    finally:
        shutil.rmtree(workdir)
