"""The Textual terminal UI: chat, decoding panel, trace tree, settings."""

from tui.app import TokentrailApp

__all__ = ["TokentrailApp"]
