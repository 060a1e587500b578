"""Scripted agent turns for the UI tests."""

import json

from backends import Looked, TokenAttention, TokenEvent
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
    return [plan("Recall the capital."), answer(text)]


def scripted(*replies, **kwargs):
    return ScriptedBackend(replies=list(replies), **kwargs)


class WatchingScripted(ScriptedBackend):
    """Scripted replies that also say where each token looked (two layers, by a fixed rule over the prompt's
    pieces) and continue a reply from any token with `branch`: the panel's attention and branches, no model."""

    supports_attention = True

    def __init__(self, *replies, branch: str = " Lyon, says the branch.") -> None:
        super().__init__(replies=list(replies))
        self.branch = branch

    def stream(self, request):
        asked = request.sampling.attention
        prompt = self.tokenizer.split(self.render(request.messages, request.tools))
        quiet = request.model_copy(update={"sampling": request.sampling.model_copy(update={"attention": 0})})
        context = list(prompt)
        for i, event in enumerate(super().stream(quiet)):
            ids = [self.tokenizer.piece_id(t) for t, _ in event.top_logprobs]
            extra = {"top_token_ids": ids}
            if asked:
                layers = [[Looked(position=(step * i + 3 * j) % len(context), token="", weight=w)
                           for j, w in enumerate(weights[:asked])]
                          for step, weights in ((7, (0.5, 0.3, 0.2)), (5, (0.6, 0.25, 0.15)))]
                layers = [[s.model_copy(update={"token": context[s.position]}) for s in spots] for spots in layers]
                extra |= {"attention": TokenAttention(layers=layers, mean=layers[0]),
                          "prompt_tokens": prompt if i == 0 else None}
            context.append(event.token)
            yield event.model_copy(update=extra)

    def continue_from(self, request, token_ids):
        for piece in self.tokenizer.split(self.branch):
            yield TokenEvent(text=piece, token_id=self.tokenizer.piece_id(piece), token=piece, logprob=-0.1)
        yield TokenEvent(text="", token_id=0, token=self.tokenizer.eos_token, logprob=0.0, finish_reason="eos")
