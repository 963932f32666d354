"""genir.timing: exclusive seconds per stage, nothing collected outside collect(), nesting without double counts."""
import pytest

from genir import timing
from genir.timing import collect, stage


class FakeClock:
    """perf_counter that advances only when told, so stage seconds are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def test_nested_stages_count_exclusive_time_and_accumulate(clock):
    with collect() as seconds:
        with stage("decode"):
            clock.now += 2.0
            with stage("encode_memory"):
                clock.now += 3.0
            clock.now += 1.0
        with stage("encode_memory"):  # a second call adds to the same stage
            clock.now += 0.5
    assert seconds == {"decode": 3.0, "encode_memory": 3.5}  # decode's 6 s less the 3 s nested in it


def test_stages_outside_collect_record_nothing_and_collect_reuses_a_dict(clock):
    with stage("dense"):
        clock.now += 1.0
    into = {"dense": 1.0}
    with collect(into) as seconds:
        assert seconds is into
        with stage("dense"):
            clock.now += 2.0
    with stage("dense"):  # after the block: not collected
        clock.now += 4.0
    assert into == {"dense": 3.0}


def test_stage_seconds_are_kept_when_the_stage_raises(clock):
    with collect() as seconds:
        with pytest.raises(ValueError):
            with stage("fusion"):
                clock.now += 1.5
                raise ValueError("boom")
        with stage("bm25"):
            clock.now += 1.0
    assert seconds == {"fusion": 1.5, "bm25": 1.0}
