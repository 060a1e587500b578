"""Where a token looked: its context lit up by attention weight, the strongest positions listed first."""

from __future__ import annotations

from rich.text import Text

from agent.events import TokenChosen
from backends import Looked

SHADES = ("on #5f0000", "on #875f00", "on #5f5f00", "on #303030")  # strongest, then the rest by weight


def shade(weight: float, strongest: float) -> str:
    share = weight / strongest if strongest > 0 else 0.0
    return SHADES[0] if share >= 0.75 else SHADES[1] if share >= 0.4 else SHADES[2] if share >= 0.15 else SHADES[3]


def positions(event: TokenChosen, layer: int | None) -> list[Looked]:
    """The event's strongest positions: over all layers (None) or in one."""
    attention = event.attention
    if attention is None:
        return []
    return attention.mean if layer is None else attention.layers[layer]


def looked_text(event: TokenChosen, context: list[str], layer: int | None) -> Text:
    """The ranking, then `context` (the prompt, then the reply before this token) with the looked-at tokens lit."""
    if event.attention is None:
        return Text("no attention for this token: the backend cannot give it, or the settings ask for none",
                    style="dim")
    looked = positions(event, layer)
    which = "all layers, averaged" if layer is None else f"layer {layer + 1} of {len(event.attention.layers)}"
    text = Text()
    text.append(f"where {event.token or event.text!r} looked ({which}; [ ] layer, a all):\n", style="bold")
    for rank, spot in enumerate(looked, start=1):
        text.append(f"{rank}. ", style="dim")
        text.append(f"#{spot.position} {spot.token!r}", style=shade(spot.weight, looked[0].weight))
        text.append(f" {spot.weight:.1%}\n")
    weights = {spot.position: spot.weight for spot in looked}
    text.append("\n")
    for position, token in enumerate(context):
        if position in weights:
            text.append(token, style=shade(weights[position], looked[0].weight) + " bold")
        else:
            text.append(token, style="dim")
    return text
