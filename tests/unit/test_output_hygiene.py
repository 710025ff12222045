"""What brokerbench writes and opens: JUnit XML that always parses, files readable by others
(0644 less the umask: they hold no secret), Locust listening on 127.0.0.1 unless told
otherwise."""

import json
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest

from harness.atomic import write_parquet_atomically, write_text_atomically
from harness.run.result_model import read_result, write_result
from reports import junit_report
from reports.load import find_runs
from reports.matrix import build_matrix

CONTROL = "".join(chr(code) for code in range(0x20))
"""Every C0 control character; XML 1.0 allows only tab, newline and carriage return."""


def _result(run_dir: Path, notes: str) -> None:
    run_dir.mkdir(parents=True)
    checks = [
        {"name": f"check{CONTROL}", "valid": False, "notes": notes, "counts": {"n": 1},
         "examples": [notes]},
        {"name": "unknown", "valid": None, "notes": notes},
        {"name": "fine", "valid": True, "notes": notes},
    ]  # fmt: skip
    document = {
        "schema": "brokerbench.result/1",
        "broker": f"kafka{CONTROL}",
        "workload": {"name": "w", "kind": "throughput"},
        "valid": False,
        "checks": checks,
    }
    (run_dir / "result.json").write_text(json.dumps(document), encoding="utf-8")


def test_junit_xml_parses_whatever_the_notes_hold(tmp_path: Path) -> None:
    notes = f"broken{CONTROL}end \ud800 \ufffe"
    _result(tmp_path / "runs" / "r0", notes)
    runs = find_runs([tmp_path / "runs"])
    document = junit_report.render(runs, build_matrix(runs))
    root = ET.fromstring(document.encode("utf-8"))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    message = failure.get("message", "")
    # Visible escapes instead of the characters XML cannot hold; tab and newline kept.
    assert message.startswith("broken\\x00\\x01")
    assert "\\x1f" in message and "\t\n" in message and message.endswith(" \\ud800 \\ufffe")
    skipped = root.find("testsuite/testcase/skipped")
    assert skipped is not None and "\\x07" in skipped.get("message", "")


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_files_are_written_0644(tmp_path: Path) -> None:
    write_text_atomically(tmp_path / "report.html", "<html></html>")
    write_parquet_atomically(tmp_path / "t.parquet", pa.table({"x": [1]}))
    _result(tmp_path / "run", "")
    write_result(tmp_path / "run", read_result(tmp_path / "run" / "result.json"))
    for path in (tmp_path / "report.html", tmp_path / "t.parquet", tmp_path / "run/result.json"):
        assert _mode(path) == 0o644, path
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_private_umask_is_respected(tmp_path: Path) -> None:
    before = os.umask(0o077)
    try:
        write_text_atomically(tmp_path / "private.json", "{}")
    finally:
        os.umask(before)
    assert _mode(tmp_path / "private.json") == 0o600


LOCUST_DEFAULTS = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from locust.argument_parser import get_parser
options = get_parser().parse_args(["-f", sys.argv[2], *sys.argv[3:]])
print(json.dumps([options.web_host, options.master_bind_host]))
"""


def _locust_hosts(locustfile: str, *args: str, **env: str) -> list[str]:
    module = f"workloads.locust.{locustfile}"
    path = f"workloads/locust/{locustfile}.py"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    completed = subprocess.run(
        [sys.executable, "-c", LOCUST_DEFAULTS, module, path, *args],
        capture_output=True, text=True, timeout=120, check=True, env=clean | env,
    )  # fmt: skip
    hosts: list[str] = json.loads(completed.stdout.splitlines()[-1])
    return hosts


@pytest.mark.parametrize("locustfile", ["throughput", "tracker", "saga", "eventsourcing"])
def test_bundled_locustfiles_listen_on_loopback_by_default(locustfile: str) -> None:
    assert _locust_hosts(locustfile) == ["127.0.0.1", "127.0.0.1"]


def test_locust_is_opened_by_its_own_flag_or_variable() -> None:
    opened = _locust_hosts("tracker", "--web-host", "*", "--master-bind-host", "0.0.0.0")
    assert opened == ["*", "0.0.0.0"]
    assert _locust_hosts("throughput", LOCUST_WEB_HOST="*") == ["*", "127.0.0.1"]
