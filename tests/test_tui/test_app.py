"""Pilot tests: the app driven like a user drives it, with the scripted backend."""

import time

import pytest
from textual.widgets import DataTable, Input, Markdown, Switch

from agent.turns import partial_answer
from backends import BackendError
from backends.scripted import ScriptedBackend
from memory import Memory
from tests.test_tui.scripts import WatchingScripted, answer, calls, plan, scripted, simple_exchange
from tools import ToolRegistry, tool
from tui import TokentrailApp
from tui.decoding import DecodingPanel
from tui.screens import ApprovalScreen, SettingsScreen
from tui.trace import TraceTree

pytestmark = pytest.mark.anyio


async def send(pilot, text):
    app = pilot.app
    prompt = app.query_one(Input)
    prompt.value = text
    await pilot.press("enter")


async def settle(pilot, timeout=10.0):
    """Waits until the current turn ends."""
    deadline = time.monotonic() + timeout
    await pilot.pause()
    while pilot.app.busy:
        assert time.monotonic() < deadline, "the turn did not end"
        await pilot.pause(0.02)
    await pilot.pause()


def chat_texts(app):
    return [(m.classes, m.source) for m in app.query("#chat Markdown").results(Markdown)]


def test_partial_answer_reads_a_half_written_json_string():
    assert partial_answer('{"answer": "Hel') == "Hel"
    assert partial_answer('{"answer": "a \\"b\\" \\n c"}') == 'a "b" \n c'
    assert partial_answer('{"answer": "caf\\u00e') == "caf"
    assert partial_answer('{"tool_calls": [') is None
    assert partial_answer("The answer is 4", native=True) == "The answer is 4" and partial_answer("", native=True) is None


async def test_a_message_streams_an_answer_and_fills_the_panels():
    backend = scripted(*simple_exchange())
    app = TokentrailApp(backend)
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "What is the capital of France?")
        await settle(pilot)
        messages = chat_texts(app)
        assert messages[0][1] == "What is the capital of France?"
        assert messages[1][1].startswith("The capital of France is **Paris**.")
        assert "unverified: no check" in messages[1][1]  # the model's own verdict passed it; nothing checked it
        # the decoding panel shows the answer's tokens, one row per act-phase token event
        act_request = backend.requests[1]
        panel = app.query_one(DecodingPanel)
        table = app.query_one("#tokens", DataTable)
        assert table.row_count == len(panel.events) > 0
        assert "".join(e.text for e in panel.events) == answer("The capital of France is **Paris**.")
        assert all(e.phase == "act" for e in panel.events) and act_request.sampling.logprobs == 5
        first = table.get_row_at(0)
        assert str(first[1]) == panel.events[0].token
        # selecting a token shows its alternatives
        table.move_cursor(row=2)
        await pilot.pause()
        shown = str(app.query_one("#alternatives").render())
        assert all(token.strip() in shown for token, _ in panel.events[2].top_logprobs if token.strip())
        assert app.history[-1].content.startswith("The capital of France")
        status = str(app.query_one("#status").render())
        assert "scripted" in status and "context" in status and "ready" in status


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(requires_approval=True)
def delete_everything(path: str) -> str:
    """Delete a path."""
    return f"deleted {path}"


async def traced_turn(answer_text: str):
    """The trace tree's node for "2 + 3?" on the plan path: a plan, add(2, 3), the answer, the checks' verdict."""
    backend = scripted(plan("Add the numbers."), calls("add", {"a": 2, "b": 3}), answer(answer_text))
    app = TokentrailApp(backend, tools=ToolRegistry([add]))
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "2 + 3?")
        await settle(pilot)
        (turn,) = app.query_one(TraceTree).root.children
        return turn


async def test_trace_tree_nodes_match_the_tool_events():
    turn = await traced_turn("5")
    labels = [str(node.label) for node in turn.children]
    assert labels[0] == "plan" and str(turn.children[0].children[0].label) == "1. Add the numbers."
    call = next(node for node in turn.children if str(node.label).startswith("tool "))
    assert str(call.label) == 'tool add({"a": 2, "b": 3})'
    assert str(call.children[0].label).startswith("→ 5 (")
    assert "verdict (checks): passed" in labels and labels[-1] == "answer (verified)"


async def test_an_answer_a_check_mended_shows_what_the_model_wrote():
    turn = await traced_turn("2 + 3 = 6")
    (judged,) = [node for node in turn.children if str(node.label).startswith("verdict")]
    assert [str(leaf.label) for leaf in judged.children] == ["mended by sums_hold; the model wrote: 2 + 3 = 6"]


async def test_escape_cancels_at_once_and_the_app_stays_usable():
    class Slow(ScriptedBackend):
        def stream(self, request):
            for event in super().stream(request):
                time.sleep(0.05)
                yield event

    long_plan = plan(*[f"Step {i} of a long plan with many words in it." for i in range(1, 4)])
    backend = Slow(replies=[long_plan, *simple_exchange("second turn works")])
    app = TokentrailApp(backend)
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "take your time")
        await pilot.pause(0.3)
        assert app.busy
        started = time.monotonic()
        await pilot.press("escape")
        await settle(pilot, timeout=2)
        assert time.monotonic() - started < 1.0
        assert chat_texts(app)[-1][1] == "*cancelled*" and app.history == []
        await send(pilot, "again")
        await settle(pilot)
        assert "second turn works" in chat_texts(app)[-1][1]


@pytest.mark.parametrize("key, allowed", [("y", True), ("n", False)])
async def test_the_approval_modal_blocks_the_tool_until_answered(key, allowed):
    backend = scripted(plan("Delete it."), calls("delete_everything", {"path": "/tmp/x"}), answer("done"))
    app = TokentrailApp(backend, tools=ToolRegistry([delete_everything]))
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "delete /tmp/x")
        deadline = time.monotonic() + 5
        while not isinstance(app.screen, ApprovalScreen):
            assert time.monotonic() < deadline
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        assert app.busy and len(backend.requests) == 2  # waiting on the answer, nothing further asked
        assert "/tmp/x" in str(app.screen.query_one("#approval-arguments").render())
        await pilot.press(key)
        await settle(pilot)
        (turn,) = app.query_one(TraceTree).root.children
        call = next(node for node in turn.children if str(node.label).startswith("tool "))
        result = str(call.children[0].label)
        assert result.startswith("→ deleted /tmp/x") if allowed else result.startswith("✗ ")


async def test_backend_errors_show_in_the_chat_and_keep_the_conversation():
    def fail(request):
        raise BackendError("the model server went away")

    backend = ScriptedBackend(replies=simple_exchange("first answer"), reply_fn=fail)
    app = TokentrailApp(backend)
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "first")
        await settle(pilot)
        await send(pilot, "second")
        await settle(pilot)
        texts = [source for _, source in chat_texts(app)]
        assert any("the model server went away" in t for t in texts)
        assert [m.content for m in app.history][:2] == ["first", "first answer"]
        assert app.is_running


async def test_a_model_that_fails_to_load_is_reported_in_the_ui():
    def load():
        raise BackendError("model file /nowhere.gguf does not exist")

    app = TokentrailApp(load)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause(0.3)
        assert any("/nowhere.gguf does not exist" in source for _, source in chat_texts(app))
        await send(pilot, "hello?")
        await pilot.pause()
        assert "No model is loaded" in chat_texts(app)[-1][1] and app.is_running


async def test_settings_screen_validates_and_applies():
    app = TokentrailApp(scripted(*simple_exchange()))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("f2")
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#setting-temperature", Input).value = "7000"
        await pilot.click("#save")
        assert isinstance(app.screen, SettingsScreen)
        assert "temperature" in str(app.screen.query_one("#settings-error").render())
        app.screen.query_one("#setting-temperature", Input).value = "0.5"
        app.screen.query_one("#setting-top_k", Input).value = "40"
        app.screen.query_one("#setting-seed", Input).value = "7"
        app.screen.query_one("#setting-constrained", Switch).value = False
        await pilot.click("#save")
        assert not isinstance(app.screen, SettingsScreen)
        s = app.settings.sampling
        assert (s.temperature, s.top_k, s.seed, app.settings.constrained) == (0.5, 40, 7, False)
        await send(pilot, "hi")
        await settle(pilot)
        sent = app.backend.requests[0]
        assert sent.sampling.temperature == 0.5 and sent.sampling.seed == 7 and sent.constraint is None


async def test_conversations_are_saved_and_reopened(tmp_path):
    store = Memory(tmp_path / "memory.db", embedder=None)
    app = TokentrailApp(scripted(*simple_exchange("Paris.")), memory=store)
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "Capital of France?")
        await settle(pilot)
    saved = store.conversations.recent()
    assert [(c["title"], c["turns"]) for c in saved] == [("Capital of France?", 1)]
    reopened = TokentrailApp(scripted(), memory=store)
    async with reopened.run_test(size=(140, 40)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert [source for _, source in chat_texts(reopened)] == ["Capital of France?", "Paris."]
        assert reopened.conversation_id == saved[0]["id"]
    store.close()


async def test_f5_and_f6_rate_the_last_answer_for_training(tmp_path):
    store = Memory(tmp_path / "memory.db", embedder=None)
    app = TokentrailApp(scripted(*simple_exchange("Paris."), *simple_exchange("Lyon.")), memory=store)
    said = []
    app.notify = lambda message, **kwargs: said.append(message)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("f5")  # nothing answered yet: a warning, no crash
        await pilot.pause()
        assert "no logged answer to rate yet" in said[-1]
        await send(pilot, "Capital of France?")
        await settle(pilot)
        await pilot.press("f5")
        await send(pilot, "Capital of France, really?")
        await settle(pilot)
        await pilot.press("f6")
        await pilot.pause()
        assert said[-1].startswith("marked bad")
    ratings = {r["answer"]: r["feedback"] for r in store.traces.runs()}
    assert ratings == {"Paris.": "good", "Lyon.": "bad"}
    store.close()


async def test_input_history_recalls_earlier_messages():
    app = TokentrailApp(scripted(*simple_exchange()))
    async with app.run_test(size=(140, 40)) as pilot:
        await send(pilot, "first question")
        await settle(pilot)
        await pilot.press("up")
        assert app.query_one(Input).value == "first question"
        await pilot.press("down")
        assert app.query_one(Input).value == ""


async def answer_and_select(pilot, row: int) -> DataTable:
    """Asks the capital of France, waits for the answer and selects its token `row` in the decoding panel."""
    await send(pilot, "What is the capital of France?")
    await settle(pilot)
    table = pilot.app.query_one("#tokens", DataTable)
    table.focus()
    table.move_cursor(row=row)
    await pilot.pause()
    return table


async def test_a_token_shows_where_it_looked_layer_by_layer():
    app = TokentrailApp(WatchingScripted(*simple_exchange()))
    async with app.run_test(size=(140, 40)) as pilot:
        await answer_and_select(pilot, 5)
        panel = app.query_one(DecodingPanel)
        assert panel.prompt_tokens and "France" in "".join(panel.prompt_tokens)
        looked = panel.events[5].attention.mean
        shown = str(app.query_one("#looked").render())
        assert "all layers, averaged" in shown
        ranking = shown[: shown.index("\n\n")]  # strongest first, then the context lit up
        places = [ranking.index(f"#{spot.position} ") for spot in looked]
        assert places == sorted(places) and f"{looked[0].weight:.1%}" in ranking
        await pilot.press("right_square_bracket")
        assert "layer 1 of 2" in str(app.query_one("#looked").render())
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert "layer 1 of 2" in str(app.query_one("#looked").render())  # round the layers
        await pilot.press("a")
        assert "all layers, averaged" in str(app.query_one("#looked").render())


async def test_a_branch_from_an_alternative_continues_and_the_original_is_kept():
    backend = WatchingScripted(*simple_exchange())
    app = TokentrailApp(backend)
    async with app.run_test(size=(140, 40)) as pilot:
        table = await answer_and_select(pilot, 4)
        panel = app.query_one(DecodingPanel)
        original = list(panel.events)
        alternative = original[4].top_logprobs[1][0]
        await pilot.press("2")
        for _ in range(50):
            await pilot.pause(0.02)
        assert len(panel.versions) == 2 and panel.shown == 1
        branch = panel.events
        assert branch[:4] == original[:4] and branch[4].token == alternative
        assert "".join(e.text for e in branch[5:]) == backend.branch
        assert table.row_count == len(branch)
        assert "branch from #5" in str(app.query_one("#version").render())
        await pilot.press("o")
        assert panel.shown == 0 and panel.events == original and table.row_count == len(original)


async def test_a_branch_is_refused_without_alternatives_or_a_backend_that_can_branch():
    app = TokentrailApp(scripted(*simple_exchange()))  # no token ids, no continue_from
    said = []
    async with app.run_test(size=(140, 40)) as pilot:
        app.notify = lambda message, **kwargs: said.append(message)
        app.query_one(DecodingPanel).notify = app.notify
        await answer_and_select(pilot, 2)
        await pilot.press("1")
        assert "no branch 1 from token #3: it had no alternatives" in said[-1]
        assert len(app.query_one(DecodingPanel).versions) == 1
        assert "no attention for this token" in str(app.query_one("#looked").render())


async def test_a_backend_that_cannot_continue_a_reply_leaves_the_original_shown():
    backend = WatchingScripted(*simple_exchange())
    backend.continue_from = None  # token ids and alternatives, but no branches
    app = TokentrailApp(backend)
    said = []
    async with app.run_test(size=(140, 40)) as pilot:
        app.notify = lambda message, **kwargs: said.append(message)
        table = await answer_and_select(pilot, 4)
        panel = app.query_one(DecodingPanel)
        original = list(panel.events)
        await pilot.press("2")
        await pilot.pause()
        assert "cannot continue a reply" in said[-1]
        assert len(panel.versions) == 1 and panel.events == original and table.row_count == len(original)
