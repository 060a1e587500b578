"""A line-based terminal chat: `tokentrail chat --plain`, for pipes and dumb terminals."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from backends import Backend, BackendError, GenerationRequest, Message, SamplingParams

HELP = "Commands: /reset clears the conversation, /quit leaves (or Ctrl-D)."


def chat_loop(backend: Backend, sampling: SamplingParams, read: Callable[[str], str] = input,
              console: Console | None = None) -> list[Message]:
    """Reads user turns until /quit or end of input; streams each reply. Returns the conversation."""
    console = console or Console()
    console.print(f"[bold]tokentrail chat[/] · backend {backend.name} · {HELP}")
    messages: list[Message] = []
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return messages
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return messages
        if line == "/reset":
            messages.clear()
            console.print("[dim]conversation cleared[/]")
            continue
        messages.append(Message(role="user", content=line))
        reply: list[str] = []
        console.print("[bold]assistant>[/] ", end="")
        try:
            for event in backend.stream(GenerationRequest(messages=messages, sampling=sampling)):
                reply.append(event.text)
                console.print(event.text, end="", soft_wrap=True, highlight=False, markup=False)
        except BackendError as exc:
            messages.pop()  # the turn failed; the conversation stays as it was
            console.print(f"\n[red]error:[/] {exc}")
            continue
        except KeyboardInterrupt:
            console.print("\n[dim](interrupted)[/]")
        console.print()
        messages.append(Message(role="assistant", content="".join(reply)))
