"""The typed events of a run: the one stream the CLI, the TUI, the trace log and tests consume."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

from backends.types import GenerationRequest, Message, TokenAttention

Phase = Literal["plan", "act", "verify"]


class RunStarted(BaseModel):
    type: Literal["run_started"] = "run_started"
    task: str
    run_id: str | None = None
    backend: str = ""


class PhaseStarted(BaseModel):
    type: Literal["phase"] = "phase"
    phase: Phase


class TokenChosen(BaseModel):
    type: Literal["token"] = "token"
    phase: Phase
    text: str
    token: str = ""
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[str, float]] = Field(default_factory=list)
    top_token_ids: list[int] = Field(default_factory=list)  # the alternatives' ids, where the backend knows them
    attention: TokenAttention | None = None  # where it looked, when the sampling settings ask (attention=K)
    prompt_tokens: list[str] | None = None  # with attention, on a reply's first token: its prompt, token by token


class ModelReplied(BaseModel):
    """One model call, whole: the messages it was given and what it answered (tool calls included).
    Traces keep these so that runs can become training data (`tokentrail train data`)."""

    type: Literal["model_reply"] = "model_reply"
    phase: Phase
    messages: list[Message]
    reply: Message
    # the whole request, to branch from one of the reply's tokens (Backend.continue_from); not kept in traces
    request: GenerationRequest | None = Field(None, exclude=True)


class MemoryRecalled(BaseModel):
    type: Literal["memory"] = "memory"
    hits: list[dict[str, Any]]  # chunk_id, source, score, text, why (which rankings found it, memory.search.Match)


class PlanMade(BaseModel):
    type: Literal["plan"] = "plan"
    steps: list[str]
    replan: bool = False
    direct: bool = False  # the model chose to answer at once, without a plan or tools


class ToolCalled(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any]


class ToolReturned(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    id: str
    name: str
    ok: bool
    output: str = ""
    error: str | None = None
    duration: float = 0.0


class Verdict(BaseModel):
    type: Literal["verdict"] = "verdict"
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    by: Literal["checks", "model"] = "checks"
    answer: str = ""  # the answer judged
    rules: list[str] = Field(default_factory=list)  # the checks that refused it (agent/checks.py), by name
    verified: bool = False  # passed, and a check, a verifier, the output type or the model's verdict confirmed it
    call_next: bool = False  # a check found a reply that should have been a tool call
    mended_by: list[str] = Field(default_factory=list)  # the checks that put the model's answer right (`answer` is theirs)
    model_answer: str | None = None  # when mended: the answer as the model wrote it


class Steered(BaseModel):
    """A policy (agent/policies.py) decided what the next model turn may do."""

    type: Literal["steer"] = "steer"
    policy: str
    tool_choice: Literal["auto", "required", "none"]
    why: str = ""


class ContextTrimmed(BaseModel):
    type: Literal["context"] = "context"
    action: Literal["shortened_observations", "summarized_turns"]
    tokens_before: int
    tokens_after: int


class Final(BaseModel):
    type: Literal["final"] = "final"
    answer: str | None
    verified: bool
    reason: str = ""  # why the run ended without a verified answer


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    message: str
    recoverable: bool = True


Event = Annotated[
    Union[RunStarted, PhaseStarted, TokenChosen, ModelReplied, MemoryRecalled, PlanMade, ToolCalled, ToolReturned,
          Verdict, Steered, ContextTrimmed, Final, ErrorEvent],
    Field(discriminator="type"),
]
