"""dpx.progress.Ticker: silent while a stage is quick, then one line per interval with what
is done and the time left at the rate so far."""
import logging

from dpx import progress


def test_ticker_lines(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    log = logging.getLogger("dpx.test_progress")
    with caplog.at_level(logging.INFO, logger="dpx.test_progress"):
        t = progress.Ticker(log, "scan", 100, "frames", every=5.0)
        now[0] = 1.0
        t.advance(10)  # 1 s in: quiet
        now[0] = 6.0
        t.advance(20, "system 3 of 9")  # 30 done in 6 s: 14 s left
        now[0] = 20.0
        t.advance(70)  # finished: no line, the stage's own summary follows
    assert [r.getMessage() for r in caplog.records] == [
        "scan: 30/100 frames (system 3 of 9), 0:00:06 elapsed, 0:00:14 left"]
    assert list(progress.Ticker(log, "x", 2, "items").iterate("ab")) == ["a", "b"]
    assert progress.hms(3725) == "1:02:05"
