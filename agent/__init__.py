"""The agent loop: plan, act, verify, streamed as typed events."""
