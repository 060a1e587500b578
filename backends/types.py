"""The types every backend speaks: messages, requests, token events, generations.

They cross every boundary in the project (agent, tools, TUI, HTTP), so they are pydantic
models and validate what they are given.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backends.schemas import closed

Role = Literal["system", "user", "assistant", "tool"]

# eos: the model ended its turn; stop: a stop string matched; length: max_tokens or the
# context window ran out; cancelled: the consumer stopped the stream; tool_calls: the reply
# is a set of tool calls (backends that parse them).
FinishReason = Literal["eos", "stop", "length", "cancelled", "tool_calls"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    name: str = Field(min_length=1)
    arguments: str = "{}"  # a JSON object as text, as the OpenAI chat format carries it


class ToolCall(_Strict):
    """One tool call in the OpenAI chat format: {"id", "type": "function", "function"}."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def create(cls, id: str, name: str, arguments: dict[str, Any] | str) -> ToolCall:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(id=id, function=FunctionCall(name=name, arguments=text))

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def arguments(self) -> str:
        return self.function.arguments


class Message(_Strict):
    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None  # on role "tool": which call this result answers
    name: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs tool_call_id (the id of the call it answers)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not role {self.role!r}")
        if self.content is None and not self.tool_calls:
            raise ValueError(f"a {self.role!r} message needs content (or tool_calls on an assistant message)")
        return self


class Constraint(_Strict):
    """Structured output: at most one of a JSON Schema, a regular expression, a Lark grammar."""

    json_schema: dict[str, Any] | None = None
    regex: str | None = None
    grammar: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Constraint:
        given = [k for k in ("json_schema", "regex", "grammar") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a Constraint takes exactly one of json_schema, regex, grammar; got {given or 'none'}")
        if self.regex is not None:
            try:  # the `regex` module reads Unicode classes (\p{L}) as llguidance does; `re` does not
                regex.compile(self.regex)
            except regex.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return self

    @classmethod
    def from_model(cls, model: type[BaseModel]) -> Constraint:
        """The model's JSON Schema with every object closed: only declared fields may appear."""
        return cls(json_schema=closed(model.model_json_schema()))


class SamplingParams(_Strict):
    temperature: float = Field(0.7, ge=0.0, le=100.0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 means off")
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, float] = Field(default_factory=dict)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    logprobs: int = Field(0, ge=0, le=20, description="how many alternatives each TokenEvent carries")
    beam_width: int = Field(1, ge=1, le=16, description="above 1: beam search instead of sampling")
    length_penalty: float = Field(1.0, ge=-10.0, le=10.0, description="beam score = sum of logprobs / length**this")
    early_stopping: bool = Field(True, description="beam search ends once beam_width beams have finished")
    attention: int = Field(0, ge=0, le=4096, description="how many context positions each TokenEvent names as "
                           "the ones its token attended to most (0: none; backends that cannot say ignore it)")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @model_validator(mode="after")
    def _beam_search_is_deterministic(self) -> SamplingParams:
        if self.beam_width > 1 and self.temperature != 0.0:
            raise ValueError(
                f"beam search is deterministic: set temperature=0 with beam_width={self.beam_width} "
                f"(got temperature={self.temperature})"
            )
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class GenerationRequest(_Strict):
    messages: list[Message] = Field(min_length=1)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    tools: list[dict[str, Any]] | None = None  # OpenAI function schemas, for the chat template
    constraint: Constraint | None = None
    # None: tools are only shown to the model. "auto" | "required" | a tool's name: backends
    # that call tools return parsed ToolCalls (the local engine forces valid ones by grammar);
    # "none": the model must answer in text.
    tool_choice: str | None = None
    parallel_tool_calls: bool = True
    # Narrower than `tools`, for backends that force calls by grammar: the calls the reply may
    # make (a call already made excluded, numbers limited to those seen); the template still
    # shows `tools`. A tool left out may not be called. None: any call of `tools`.
    callable_tools: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> GenerationRequest:
        names = [t.get("function", {}).get("name") for t in self.tools or []]
        if self.callable_tools is not None:
            unknown = [n for t in self.callable_tools if (n := t.get("function", {}).get("name")) not in names]
            if unknown:
                raise ValueError(f"callable_tools names {unknown}, which are not among the tools {names}")
        if self.tool_choice in (None, "auto", "none"):
            return self
        if not names:
            raise ValueError(f"tool_choice {self.tool_choice!r} needs tools")
        if self.tool_choice != "required" and self.tool_choice not in names:
            raise ValueError(f"tool_choice names {self.tool_choice!r}, which is not among the tools {names}")
        return self


class Looked(_Strict):
    """One context position a token attended to: where, which token is there, with what weight."""

    position: int = Field(ge=0)  # in the prompt followed by the reply so far
    token: str
    weight: float = Field(ge=0.0, le=1.0)


class TokenAttention(_Strict):
    """Where a token looked: the strongest positions, per layer and over all layers, heads averaged."""

    layers: list[list[Looked]]  # layer by layer, strongest first
    mean: list[Looked]  # of the per-layer weights averaged over layers, strongest first


class TokenEvent(_Strict):
    """One sampled token.

    `text` is what this token released to the reader: it may be empty (half a UTF-8
    character, a possible stop-string prefix, or an end-of-sequence token) and may include
    text held back from earlier tokens. The last event of a stream carries finish_reason.
    """

    text: str
    token_id: int
    token: str = ""  # this token's own text, for display
    logprob: float | None = None
    top_logprobs: list[tuple[str, float]] = Field(default_factory=list)
    top_token_ids: list[int] = Field(default_factory=list)  # the alternatives' ids, where the backend knows them
    finish_reason: FinishReason | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)  # on the last event, when finish_reason is tool_calls
    cached_prompt_tokens: int | None = Field(None, ge=0)  # on the first event: prompt tokens reused from the KV cache
    attention: TokenAttention | None = None  # when SamplingParams.attention asked for it
    prompt_tokens: list[str] | None = None  # on the first event when attention was asked: the prompt, token by token


class Usage(_Strict):
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cached_prompt_tokens: int = Field(0, ge=0)  # of prompt_tokens, how many the KV cache already held

    @classmethod
    def of(cls, events: list[TokenEvent], prompt_tokens: int) -> Usage:
        """The usage of a reply made of `events` (the first says how much of the prompt was cached)."""
        cached = (events[0].cached_prompt_tokens or 0) if events else 0
        return cls(prompt_tokens=prompt_tokens, completion_tokens=len(events), cached_prompt_tokens=cached)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Generation(_Strict):
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    usage: Usage
    events: list[TokenEvent] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    score: float | None = None  # beam search: the winning beam's length-normalized logprob
