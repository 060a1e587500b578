"""Memory: documents, chunks, embeddings and run traces in one SQLite file."""

from backends.embedders import Embedder, MiniLMEmbedder
from memory.protocols import MemoryLike, RunLog
from memory.search import Hit
from memory.store import IngestReport, Memory, MemoryStoreError

__all__ = ["Embedder", "Hit", "IngestReport", "Memory", "MemoryLike", "MemoryStoreError", "MiniLMEmbedder", "RunLog"]
