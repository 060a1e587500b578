"""The tokentrail chat app: talk to the agent and watch every step it takes.

Each message runs the agent (plan, act, verify) on a worker thread. Its events arrive here as
messages: tokens go to the decoding panel (and the answer, as it forms, to the chat), tool
calls and verdicts to the trace tree. Esc cancels between two tokens. A branch the decoding
panel asks for runs on a worker thread too, through the backend's `continue_from`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.widgets import Footer, Markdown, Static

from agent import Agent
from agent.events import ErrorEvent, Event, Final, ModelReplied, PhaseStarted, RunStarted, TokenChosen
from agent.turns import partial_answer
from backends import Backend, GenerationRequest, Message, SamplingParams, TokenEvent
from memory.protocols import MemoryLike
from tools import ToolRegistry
from tools.registry import ApprovalRequest
from tui.chat import HistoryInput
from tui.decoding import BranchRequested, DecodingPanel
from tui.screens import ApprovalScreen, ConversationsScreen, Settings, SettingsScreen
from tui.trace import TraceTree

BackendSource = Backend | Callable[[], Backend]


class AgentEvent(UIMessage):
    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class TurnEnded(UIMessage):
    def __init__(self, history: list[Message] | None, error: str | None = None, cancelled: bool = False) -> None:
        super().__init__()
        self.history, self.error, self.cancelled = history, error, cancelled


class BranchToken(UIMessage):
    def __init__(self, version: int, event: TokenChosen | None, error: str | None = None) -> None:
        super().__init__()
        self.version, self.event, self.error = version, event, error


class BackendReady(UIMessage):
    def __init__(self, backend: Backend | None, error: str | None = None) -> None:
        super().__init__()
        self.backend, self.error = backend, error


class TokentrailApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tokentrail"
    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("f2", "settings", "settings"),
        Binding("f3", "conversations", "conversations"),
        Binding("ctrl+n", "new_conversation", "new chat"),
        Binding("f5", "rate(True)", "good answer"),
        Binding("f6", "rate(False)", "bad answer"),
        Binding("ctrl+q", "quit", "quit"),
    ]

    def __init__(self, backend: BackendSource, tools: ToolRegistry | None = None, memory: MemoryLike | None = None,
                 sampling: SamplingParams | None = None, constrained: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._backend_source = backend
        self.backend: Backend | None = None
        self.tools = tools if tools is not None else ToolRegistry()
        self.tools.approver = self._ask_approval
        self.memory = memory
        self.settings = Settings(sampling or SamplingParams(temperature=0.0, max_tokens=300, logprobs=5, attention=8),
                                 constrained if constrained is not None else True)
        self.clock = clock
        self.history: list[Message] = []
        self._context_used = 0  # tokens of the history, counted when it changes
        self._state = "starting"
        self.conversation_id: str | None = None
        self._cancel = threading.Event()
        self.busy = False
        self._answer: Markdown | None = None
        self._act_text: list[str] = []  # the current act generation's text, to read the answer from
        self._native = False  # whether the agent acts in the model's own tool-call format (plain-text answers)
        self._previous: Event | None = None
        self._token_times: list[float] = []
        self._run_id: str | None = None  # the run in progress, as the trace log knows it
        self._rateable: str | None = None  # the last run that answered, for F5 / F6
        self._act_request: GenerationRequest | None = None  # what the decoding panel's tokens answered, to branch

    # layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat-pane"):
                yield VerticalScroll(id="chat")
                yield HistoryInput(placeholder="Ask something; Enter sends, Esc cancels", id="prompt")
            with Vertical(id="side"):
                yield DecodingPanel(id="decoding")
                yield TraceTree(id="trace")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#decoding", DecodingPanel).border_title = "decoding"
        self.query_one("#trace", TraceTree).border_title = "trace"
        self.query_one("#chat").border_title = "chat"
        self.query_one(HistoryInput).focus()
        self._refresh_panels()
        if callable(self._backend_source) and not hasattr(self._backend_source, "stream"):
            self._set_status("loading the model…")
            self._load_backend()
        else:
            self.post_message(BackendReady(self._backend_source))  # type: ignore[arg-type]

    @work(thread=True, exit_on_error=False)
    def _load_backend(self) -> None:
        try:
            self.post_message(BackendReady(self._backend_source()))  # type: ignore[operator]
        except Exception as exc:  # the UI stays up and says why
            self.post_message(BackendReady(None, f"{type(exc).__name__}: {exc}"))

    async def on_backend_ready(self, message: BackendReady) -> None:
        if message.backend is None:
            await self._say("error", f"**The model could not be loaded.** {message.error}")
            self._set_status("no model")
            return
        self.backend = message.backend
        self._set_status("ready")

    # chat

    async def _say(self, role: str, text: str) -> Markdown:
        widget = Markdown(text, classes=f"message {role}")
        chat = self.query_one("#chat", VerticalScroll)
        await chat.mount(widget)
        chat.scroll_end(animate=False)
        return widget

    async def on_input_submitted(self, event: HistoryInput.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        prompt = self.query_one(HistoryInput)
        if self.busy:
            self.notify("the agent is still working; Esc cancels it", severity="warning")
            return
        if self.backend is None:
            await self._say("error", "No model is loaded, so nothing can answer. Restart with a working `--model`.")
            return
        prompt.remember(text)
        prompt.value = ""
        await self._say("user", text)
        self._answer = await self._say("assistant", "…")
        self._act_text, self._previous, self._act_request = [], None, None
        self._token_times.clear()
        self.query_one(DecodingPanel).clear()
        self._cancel.clear()
        self.busy = True
        self._set_status("thinking…")
        self._run_turn(text, list(self.history))

    @work(thread=True, exit_on_error=False)
    def _run_turn(self, task: str, history: list[Message]) -> None:
        assert self.backend is not None
        sampling = self.settings.sampling
        if not getattr(self.backend, "supports_attention", False):  # asked of it, the backend would only warn
            sampling = sampling.model_copy(update={"attention": 0})
        agent = Agent(self.backend, tools=self.tools, memory=self.memory, sampling=sampling,
                      constrain=self.settings.constrained and self.backend.supports_constraints)
        self._native = agent.native
        events = agent.stream(task, history)
        final: Final | None = None
        try:
            for event in events:
                if self._cancel.is_set():
                    events.close()
                    self.post_message(TurnEnded(None, cancelled=True))
                    return
                final = event if isinstance(event, Final) else final
                self.post_message(AgentEvent(event))
        except Exception as exc:  # a bug must not take the conversation with it
            self.post_message(TurnEnded(None, error=f"{type(exc).__name__}: {exc}"))
            return
        updated = [*history, Message(role="user", content=task)]
        if final is not None and final.answer is not None:
            updated.append(Message(role="assistant", content=final.answer))
        self.post_message(TurnEnded(updated))

    async def on_agent_event(self, message: AgentEvent) -> None:
        event = message.event
        trace = self.query_one(TraceTree)
        trace.record(event)
        if not isinstance(event, (TokenChosen, PhaseStarted)):  # keep the newest step in view
            trace.call_after_refresh(trace.scroll_end, animate=False)
        if isinstance(event, RunStarted):
            self._run_id = event.run_id
        elif isinstance(event, PhaseStarted):
            self._set_status(f"{event.phase}…")
        elif isinstance(event, TokenChosen):
            await self._on_token(event)
        elif isinstance(event, ModelReplied) and event.phase == "act":
            self._act_request = event.request
        elif isinstance(event, ErrorEvent) and not event.recoverable:
            await self._say("error", f"**Error:** {event.message}")
        elif isinstance(event, Final) and self._answer is not None:
            self._rateable = self._run_id if event.answer is not None else None
            if event.answer is not None:
                badge = ("✓ verified" if event.verified else f"✗ not verified: {event.reason}" if event.reason
                         else "unverified: no check had anything to hold it to")
                await self._answer.update(f"{event.answer}\n\n*{badge}*")
            else:
                await self._answer.update(f"*no answer: {event.reason}*")
        self._previous = event

    async def _on_token(self, event: TokenChosen) -> None:
        self._token_times.append(self.clock())
        if event.phase != "act":
            return
        # A new act generation starts after anything that is not one of its tokens (a tool result, say).
        if not (isinstance(self._previous, TokenChosen) and self._previous.phase == "act"):
            self._act_text = []
            self.query_one(DecodingPanel).clear()
        self.query_one(DecodingPanel).add(event)
        before = partial_answer("".join(self._act_text), self._native)
        self._act_text.append(event.text)
        after = partial_answer("".join(self._act_text), self._native)
        if after and after != before and self._answer is not None:
            await self._answer.update(after)
            self.query_one("#chat", VerticalScroll).scroll_end(animate=False)
        self._refresh_panels()

    async def on_turn_ended(self, message: TurnEnded) -> None:
        self.busy = False
        if message.cancelled:
            await self._say("error", "*cancelled*")
        elif message.error:
            await self._say("error", f"**The turn failed:** {message.error}")
        elif message.history is not None:
            self._set_history(message.history)
            self._save_conversation()
        self._set_status("ready")
        self._refresh_panels()

    def _save_conversation(self) -> None:
        store = self.memory.conversations if self.memory is not None else None
        if store is None or not self.history:
            return
        try:
            self.conversation_id = store.save(self.history, self.conversation_id)
        except Exception as exc:  # a locked or broken database must not cost the chat
            self.notify(f"the conversation was not saved: {exc}", severity="error")

    # panels

    def _speed(self) -> float | None:
        recent = self._token_times[-32:]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _set_history(self, history: list[Message]) -> None:
        """The conversation changes only here, so its token count is taken here, not on every token."""
        self.history = history
        backend = self.backend
        self._context_used = len(backend.tokenizer.encode(backend.render(history))) if backend and history else 0

    def _set_status(self, state: str) -> None:
        self._state = state
        self._refresh_panels()

    def _refresh_panels(self) -> None:
        speed = self._speed()
        self.query_one(DecodingPanel).show_settings(self.settings.sampling, self.settings.constrained, speed)
        backend = self.backend
        parts = [self._state]
        if backend is not None:
            parts = [backend.name, backend.model_name,
                     f"context {self._context_used}/{backend.context_window}",
                     f"{speed:.1f} tok/s" if speed else "- tok/s", *parts]
        self.query_one("#status", Static).update(" │ ".join(parts))

    # actions

    def action_cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            self._set_status("cancelling…")

    def action_rate(self, good: bool) -> None:
        """The user's verdict on the last answer, kept with its run for `tokentrail train data`."""
        if self.busy or self._rateable is None or self.memory is None or self.memory.traces is None:
            why = "wait for the answer" if self.busy else "no logged answer to rate yet (runs are logged to the memory)"
            self.notify(why, severity="warning")
            return
        try:
            self.memory.traces.rate(self._rateable, good)
        except Exception as exc:  # a locked database must not cost the chat
            self.notify(f"the rating was not saved: {exc}", severity="error")
            return
        use = "a training example" if good else "an example of what not to answer"
        self.notify(f"marked {'good' if good else 'bad'}: `tokentrail train data` makes it {use}")

    def action_settings(self) -> None:
        def apply(result: Settings | None) -> None:
            if result is not None:
                self.settings = result
                self._refresh_panels()

        self.push_screen(SettingsScreen(self.settings), apply)

    def action_conversations(self) -> None:
        store = self.memory.conversations if self.memory is not None else None
        if store is None:
            self.notify("no memory database: start with --memory PATH to keep conversations", severity="warning")
            return
        self.push_screen(ConversationsScreen(store.recent()), self._reopen)

    async def _reopen(self, conversation_id: str | None) -> None:
        if conversation_id is None or self.busy:
            return
        self._set_history(self.memory.conversations.load(conversation_id))
        self.conversation_id, self._rateable = conversation_id, None
        await self.query_one("#chat", VerticalScroll).remove_children()
        for message in self.history:
            if message.role in ("user", "assistant") and message.content:
                await self._say(message.role, message.content)
        self._refresh_panels()

    async def action_new_conversation(self) -> None:
        if self.busy:
            return
        self._set_history([])
        self.conversation_id, self._rateable = None, None
        await self.query_one("#chat", VerticalScroll).remove_children()
        self.query_one(DecodingPanel).clear()
        self.query_one(TraceTree).clear()
        self._refresh_panels()

    # branches

    def on_branch_requested(self, message: BranchRequested) -> None:
        continue_from = getattr(self.backend, "continue_from", None)
        why = ("wait for the answer to finish" if self.busy else
               "this backend cannot continue a reply from a token" if continue_from is None else
               "no reply to branch from yet" if self._act_request is None else None)
        panel = self.query_one(DecodingPanel)
        if why is not None:
            panel.abandon_branch()
            self.notify(f"no branch: {why}", severity="warning")
            return
        self._run_branch(continue_from, self._act_request, message.token_ids, len(panel.versions) - 1)

    @work(thread=True, exit_on_error=False, group="branch", exclusive=True)
    def _run_branch(self, continue_from: Callable[..., object], request: GenerationRequest, token_ids: list[int],
                    version: int) -> None:
        try:
            for token in continue_from(request, token_ids):
                assert isinstance(token, TokenEvent)
                self.post_message(BranchToken(version, TokenChosen(
                    phase="act", text=token.text, token=token.token, token_id=token.token_id, logprob=token.logprob,
                    top_logprobs=token.top_logprobs, top_token_ids=token.top_token_ids, attention=token.attention)))
        except Exception as exc:  # a refused branch is said in the UI, the conversation goes on
            self.post_message(BranchToken(version, None, f"{type(exc).__name__}: {exc}"))

    def on_branch_token(self, message: BranchToken) -> None:
        if message.error is not None:
            self.notify(f"the branch stopped: {message.error}", severity="error")
        elif message.event is not None:
            self.query_one(DecodingPanel).add(message.event, message.version)

    # approval, called from the agent's worker thread

    def _ask_approval(self, request: ApprovalRequest) -> bool:
        decided, answer = threading.Event(), [False]

        def done(allowed: bool | None) -> None:
            answer[0] = bool(allowed)
            decided.set()

        self.call_from_thread(self.push_screen, ApprovalScreen(request), done)
        while not decided.wait(0.1):
            if self._cancel.is_set():
                return False
        return answer[0]
