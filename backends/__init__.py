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
    Looked,
    Message,
    SamplingParams,
    TokenAttention,
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
    "Looked",
    "Message",
    "SamplingParams",
    "TokenAttention",
    "TokenEvent",
    "Tokenizer",
    "ToolCall",
    "UnknownBackendError",
    "Usage",
    "available_backends",
    "load_backend",
]
