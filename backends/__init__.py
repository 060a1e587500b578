"""Backends: the protocol every model server speaks, and the registry that finds them."""

from backends.base import (
    Backend,
    BackendError,
    GenerationError,
    Tokenizer,
    UnknownBackendError,
    available_backends,
    load_backend,
)
from backends.types import (
    Constraint,
    FinishReason,
    FunctionCall,
    Generation,
    GenerationRequest,
    Message,
    SamplingParams,
    TokenEvent,
    ToolCall,
    Usage,
)

__all__ = [
    "Backend",
    "BackendError",
    "GenerationError",
    "Constraint",
    "FinishReason",
    "FunctionCall",
    "Generation",
    "GenerationRequest",
    "Message",
    "SamplingParams",
    "TokenEvent",
    "Tokenizer",
    "ToolCall",
    "UnknownBackendError",
    "Usage",
    "available_backends",
    "load_backend",
]
