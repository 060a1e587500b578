from hypothesis import given
from hypothesis import strategies as st

from backends.stops import StopMatcher


def feed(matcher, pieces):
    out, stopped = [], False
    for piece in pieces:
        text, stopped = matcher.push(piece)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(matcher.flush())
    return "".join(out), stopped


def test_stop_spanning_pieces_is_never_released():
    text, stopped = feed(StopMatcher(["</answer>"]), ["The", " end</", "ans", "wer> trailing"])
    assert (text, stopped) == ("The end", True)


def test_partial_prefix_is_released_when_it_diverges():
    matcher = StopMatcher(["END"])
    assert matcher.push("x E") == ("x ", False)
    assert matcher.push("Nx") == ("ENx", False)


def test_earliest_stop_wins():
    matcher = StopMatcher(["bb", "a"])
    assert matcher.push("xbba") == ("x", True)
    assert matcher.matched == "bb"


@given(st.lists(st.text(alphabet="abc<>/", max_size=6), max_size=8), st.text(alphabet="abc<>/", min_size=1, max_size=4))
def test_matches_whole_string_search(pieces, stop):
    whole = "".join(pieces)
    text, stopped = feed(StopMatcher([stop]), pieces)
    at = whole.find(stop)
    if at == -1:
        assert (text, stopped) == (whole, False)
    else:
        assert (text, stopped) == (whole[:at], True)
