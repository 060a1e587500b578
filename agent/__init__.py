"""The agent loop: plan, act, verify, streamed as typed events."""

from agent.events import (
    ContextTrimmed,
    ErrorEvent,
    Event,
    Final,
    MemoryRecalled,
    ModelReplied,
    PhaseStarted,
    PlanMade,
    RunStarted,
    Steered,
    TokenChosen,
    ToolCalled,
    ToolReturned,
    Verdict,
)
from agent.loop import Agent, RunResult

__all__ = ["Agent", "ContextTrimmed", "ErrorEvent", "Event", "Final", "MemoryRecalled", "ModelReplied", "PhaseStarted",
           "PlanMade", "RunResult", "RunStarted", "Steered", "TokenChosen", "ToolCalled", "ToolReturned", "Verdict"]
