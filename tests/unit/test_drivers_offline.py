"""Driver pieces that need no broker: registry, targets, encodings, flush accounting."""

import threading

import pytest

from harness.drivers.inflight import InFlight
from harness.drivers.registry import driver_class, driver_names
from harness.drivers.sqs import _decode, _encode
from harness.drivers.targets import open_driver
from harness.errors import UserError
from harness.settings import ExternalTarget, Settings


def test_the_three_drivers_are_registered_by_entry_points() -> None:
    assert {"kafka", "sqs", "pubsub"} <= set(driver_names())
    assert driver_class("kafka").name == "kafka"
    with pytest.raises(UserError, match="unknown driver 'rabbitmq'"):
        driver_class("rabbitmq")


def test_external_targets_are_validated_and_have_no_proxy() -> None:
    settings = Settings(targets={"prod": ExternalTarget(driver="kafka", settings={})})
    with pytest.raises(UserError, match="only the local stack's brokers have a proxy"):
        open_driver("prod", settings, via_proxy=True)
    with pytest.raises(UserError, match=r"targets\.prod\.settings\.bootstrap_servers: Field req"):
        open_driver("prod", settings)


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        (b'{"event": "page_view"}', "utf-8"),
        ("caf\u00e9 \U0001f600".encode(), "utf-8"),
        (b"\xff\x00binary", "base64"),
        (b"text with a \x01 control character", "base64"),
    ],
)
def test_sqs_bodies_round_trip_any_bytes(payload: bytes, encoding: str) -> None:
    body, used = _encode(payload)
    assert used == encoding
    assert _decode(body, used) == payload


def test_flush_waits_for_completions_and_reports_what_is_left() -> None:
    inflight = InFlight()
    inflight.add(3)
    inflight.done()
    assert inflight.wait(0.05) == 2
    timer = threading.Timer(0.05, inflight.done, args=(2,))
    timer.start()
    assert inflight.wait(5) == 0
