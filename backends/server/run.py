"""Running the server: in the foreground for `tokentrail serve`, or on a background thread for tests and notebooks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from backends.server.app import OpenAIServer


def serve(server: OpenAIServer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn.run(server.app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


@contextlib.contextmanager
def background(server: OpenAIServer, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serves on a thread until the block ends; yields the base URL (…/v1). Port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(server.app, log_level="warning", timeout_graceful_shutdown=2)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        runner.should_exit = True
        thread.join(timeout=10)
        sock.close()
