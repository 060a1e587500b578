"""Scripted agent turns for the UI tests."""

import json

from backends.scripted import ScriptedBackend


def plan(*steps):
    return json.dumps({"steps": list(steps)})


def calls(name, arguments):
    return json.dumps({"tool_calls": [{"name": name, "arguments": arguments}]})


def answer(text):
    return json.dumps({"answer": text})


def verdict(passed=True, *reasons):
    return json.dumps({"passed": passed, "reasons": list(reasons)})


def simple_exchange(text="The capital of France is **Paris**."):
    return [plan("Recall the capital."), answer(text), verdict(True)]


def scripted(*replies, **kwargs):
    return ScriptedBackend(replies=list(replies), **kwargs)
