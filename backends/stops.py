"""Stop strings that may span several tokens, matched on the decoded text stream."""

from __future__ import annotations


class StopMatcher:
    """Feeds on streamed text; releases what cannot be the start of a stop string.

    A stop string is never shown to the reader: text that could still grow into one is held
    back until it either completes (the stream stops) or diverges (the text is released).
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.matched: str | None = None

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to release, whether a stop string completed)."""
        if self.matched is not None:
            return "", True
        buffer = self._held + text
        first = None
        for stop in self.stops:
            at = buffer.find(stop)
            if at != -1 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self._held = ""
            self.matched = first[1]
            return buffer[: first[0]], True
        keep = self._longest_partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """The held-back text, released when the stream ends for another reason."""
        held, self._held = self._held, ""
        return held

    def _longest_partial_suffix(self, buffer: str) -> int:
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:n]):
                    best = n
                    break
        return best
