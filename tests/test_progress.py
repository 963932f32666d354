"""genir.progress: one progress bar, silent when GENIR_PROGRESS=0 or when stderr is not a terminal."""
from genir.progress import ProgressBar, track


def test_bar_is_silent_when_asked_or_not_a_terminal(monkeypatch):
    monkeypatch.setenv("GENIR_PROGRESS", "0")
    assert not ProgressBar("x", total=3).active
    assert list(track(range(3), description="x")) == [0, 1, 2]
    monkeypatch.delenv("GENIR_PROGRESS")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)  # pytest's captured stderr is not a terminal either
    assert not ProgressBar("x", total=3).active
    monkeypatch.setenv("GENIR_PROGRESS", "1")
    with ProgressBar("training", total=3, fields={"loss": "-"}) as bar:
        assert bar.active
        bar.update(2, loss="0.5")
    assert not bar.active  # closed
    assert list(track(iter(range(3)), description="x")) == [0, 1, 2]  # no len(): an open-ended bar


def test_no_second_progress_helper_left():
    import genir.data.lines as lines
    import genir.train as train

    assert not hasattr(train, "_Bar") and not hasattr(lines, "_byte_progress")
