"""Locust's statistics fed a batch at a time equal what one event per request leaves.

Run by ``test_locust_stats.py`` in a process of its own: importing Locust monkey-patches the
standard library for gevent, which must not happen inside the test session."""

import locust  # noqa: F401 - first, for gevent
import numpy as np
from locust.stats import RequestStats

from harness.history.send_log import Harvest
from harness.load.locust_stats import log_sends


def check_a_batch_logs_what_one_request_event_each_would() -> None:
    response_ms = np.array([0.4, 1.6, 7.0, 147.0, 3432.0, 58760.0, 1.6])
    errors = ["unknown: timed out", "fail: refused"]
    one_by_one, batched = RequestStats(), RequestStats()
    for value in response_ms.tolist():
        one_by_one.log_request("kafka", "send", value, 200)
    for error in errors:
        one_by_one.log_error("kafka", "send", error)
    log_sends(batched, "kafka", "send", Harvest(response_ms, errors), 200)
    for expected, got in (
        (one_by_one.total, batched.total),
        (one_by_one.get("send", "kafka"), batched.get("send", "kafka")),
    ):
        assert got.num_requests == expected.num_requests == 7
        assert got.num_failures == expected.num_failures == 2
        assert dict(got.response_times) == dict(expected.response_times)
        assert got.total_response_time == expected.total_response_time
        assert got.min_response_time == expected.min_response_time
        assert got.max_response_time == expected.max_response_time
        assert got.total_content_length == expected.total_content_length == 7 * 200
        assert sum(got.num_reqs_per_sec.values()) == 7
    assert {key: error.occurrences for key, error in batched.errors.items()} == {
        key: error.occurrences for key, error in one_by_one.errors.items()
    }


if __name__ == "__main__":
    check_a_batch_logs_what_one_request_event_each_would()
    print("ok")
