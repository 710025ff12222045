import subprocess
import sys


def test_a_batch_logs_what_one_request_event_each_would() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.unit.locust_stats_check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "ok"
