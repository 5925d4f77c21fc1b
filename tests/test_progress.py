"""lvmref.progress: one updating line on a terminal, one final line elsewhere, nothing
when quiet."""

import io

import pytest

from lvmref.progress import Progress, format_seconds


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_non_terminal_gets_only_the_final_line():
    out = io.StringIO()
    p = Progress("[1/2] fitting", 4, "epochs", stream=out)
    for i in range(4):
        p.update(elbo=-20.0 - i)
    p.done("test ELBO -18.9")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("[1/2] fitting  4/4 epochs  in ")
    assert "elbo -23" in lines[0] and lines[0].endswith("test ELBO -18.9")


def test_terminal_line_updates_in_place_with_rate_and_eta():
    out = FakeTTY()
    p = Progress("stage", 10, "updates", stream=out, min_interval=0.0)
    p.update(3)
    p.done()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 2
    first = text.split("\r")[1]
    assert "3/10 updates" in first and "updates/s" in first and "left" in first


def test_quiet_writes_nothing_and_bad_total_is_refused():
    out = FakeTTY()
    p = Progress("stage", 2, stream=out, quiet=True)
    p.update(2)
    p.done()
    assert out.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        Progress("stage", 0)
    with pytest.raises(TypeError, match="quiet"):
        Progress("stage", 1, quiet="yes")


@pytest.mark.parametrize(("s", "text"), [(0, "0.0 s"), (4.24, "4.2 s"), (9.96, "10 s"),
                                         (42.4, "42 s"), (185, "3 min 05 s"),
                                         (3725, "1 h 02 min")])
def test_format_seconds(s, text):
    assert format_seconds(s) == text
