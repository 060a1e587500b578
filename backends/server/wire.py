"""The OpenAI chat-completions wire format: requests validated into our types, replies built from ours."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backends.schemas import explain_validation
from backends.types import Constraint, GenerationRequest, Message, SamplingParams, TokenEvent, ToolCall, Usage

# Our finish reasons as OpenAI names them: a stop string and the end of the turn are both "stop".
FINISH = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop", "tool_calls": "tool_calls"}


class APIError(Exception):
    """An error the way the OpenAI API reports it: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(exc: ValidationError) -> APIError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return APIError(400, f"invalid request: {explain_validation(exc, subject='field', limit=5)}", param=param)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class WireFunction(BaseModel):
    name: str = Field(min_length=1)
    arguments: str | dict[str, Any] = "{}"


class WireToolCall(BaseModel):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: WireFunction


class WireMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    def to_message(self) -> Message:
        content = self.content
        if isinstance(content, list):
            kinds = {p.type for p in content} - {"text"}
            if kinds:
                raise ValueError(f"only text content is supported, not {sorted(kinds)}")
            content = "".join(p.text or "" for p in content)
        calls = [ToolCall.create(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or []] or None
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=content, tool_calls=calls, tool_call_id=self.tool_call_id, name=self.name)


class FunctionSpec(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class WireTool(_Wire):
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(BaseModel):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(_Wire):
    model: str
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16, description="choices sampled for the one prompt (seed, if given, + index for each)")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[WireTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # extensions that vLLM and llama.cpp accept too
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def to_request(self, default_max_tokens: int) -> GenerationRequest:
        """Our request; ValueError or ValidationError when the parts do not fit together."""
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        given = {k: getattr(self, k) for k in ("temperature", "top_p", "seed", "frequency_penalty",
                                                "presence_penalty", "top_k", "min_p", "repetition_penalty")}
        sampling = SamplingParams(
            **{"temperature": 1.0, **{k: v for k, v in given.items() if v is not None}},  # OpenAI's default is 1
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            stop=self.stop or [],
            logprobs=(self.top_logprobs or 0) if self.logprobs else 0,
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
        )
        constraint = None
        if self.response_format is not None and self.response_format.type == "json_object":
            constraint = Constraint(json_schema={"type": "object"})
        elif self.response_format is not None and self.response_format.type == "json_schema":
            if self.response_format.json_schema is None or not self.response_format.json_schema.schema_:
                raise ValueError("response_format json_schema needs json_schema.schema")
            constraint = Constraint(json_schema=self.response_format.json_schema.schema_)
        tools = [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None
        choice = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else self.tool_choice
        if tools and choice is None:
            choice = "auto"
        if not tools and choice not in (None, "none"):
            raise ValueError(f"tool_choice {choice!r} needs tools")
        return GenerationRequest(messages=[m.to_message() for m in self.messages], sampling=sampling, tools=tools,
                                 constraint=constraint, tool_choice=choice if tools else None,
                                 parallel_tool_calls=self.parallel_tool_calls)


def logprob_entry(event: TokenEvent) -> dict[str, Any]:
    def item(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob if math.isfinite(logprob) else -9999.0,
                "bytes": list(token.encode("utf-8"))}

    entry = item(event.token, event.logprob if event.logprob is not None else 0.0)
    entry["top_logprobs"] = [item(t, lp) for t, lp in event.top_logprobs]
    return entry


def tool_call_dicts(calls: list[ToolCall], streaming: bool) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(calls):
        item = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        out.append({"index": index, **item} if streaming else item)
    return out


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens}}


def completion(id: str, model: str, choices: list[list[TokenEvent]], usage: Usage, logprobs: bool) -> dict[str, Any]:
    """The whole reply: one choice for each list of events."""
    return {"id": id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [_choice(i, events, logprobs) for i, events in enumerate(choices)], "usage": usage_dict(usage)}


def _choice(index: int, events: list[TokenEvent], logprobs: bool) -> dict[str, Any]:
    last = events[-1]
    content = "".join(e.text for e in events)
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not last.tool_calls else None}
    if last.tool_calls:
        message["tool_calls"] = tool_call_dicts(last.tool_calls, streaming=False)
    entries = [logprob_entry(e) for e in events if e.finish_reason != "eos"]
    return {"index": index, "message": message, "finish_reason": FINISH[last.finish_reason or "eos"],
            "logprobs": {"content": entries} if logprobs else None}


def chunk(id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None,
          logprobs: list[dict[str, Any]] | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish,
              "logprobs": {"content": logprobs} if logprobs is not None else None}
    return {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
