import itertools

from harness.load.schedule import NS_PER_S, Schedule, Step, constant


def test_producers_interleave_into_one_evenly_spaced_stream() -> None:
    schedule = constant(rate=1000, seconds=2)
    streams = [list(schedule.intended_times(0, producer, 3)) for producer in range(3)]
    combined = sorted(t for stream in streams for t in stream)
    assert len(combined) == schedule.expected_messages() == 2000
    gaps = {b - a for a, b in itertools.pairwise(combined)}
    assert gaps == {1_000_000}
    assert combined[0] == 0
    assert combined[-1] < 2 * NS_PER_S


def test_steps_change_the_rate_at_their_boundaries() -> None:
    schedule = Schedule((Step(10, 1), Step(0, 1), Step(100, 0.5)))
    times = list(schedule.intended_times(5 * NS_PER_S, 0, 1))
    assert len(times) == 10 + 0 + 50 == schedule.expected_messages()
    assert all(5 * NS_PER_S <= t < 6 * NS_PER_S for t in times[:10])
    assert all(7 * NS_PER_S <= t < 7.5 * NS_PER_S for t in times[10:])
    assert schedule.seconds == 2.5
