"""The `local` backend: our own engine behind the Backend protocol."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backends.base import BackendError, collect
from backends.local import attention as attention_impl
from backends.local import lora, tool_calls
from backends.local.batch import Batcher, BatchSequence
from backends.local.beam import CachedBeams, beam_search
from backends.local.chat_template import CHATML, ChatTemplateError, render_chat
from backends.local.config import ModelLoadError, check_precision
from backends.local.constraints import GrammarMask
from backends.local.decode_loop import decode, prepare_cache
from backends.local.loader import LoadedModel, load_model
from backends.local.model import PREFIX_CACHE_BYTES
from backends.local.model_cache import Progress, resolve
from backends.local.sampling import Sampler
from backends.local.sampling import alternatives as top_alternatives
from backends.local.tokenizer import IncrementalDetokenizer, LocalTokenizer
from backends.local.tool_formats import ToolFormat, native_format
from backends.local.watch import token_attention
from backends.stops import StopMatcher
from backends.types import Generation, GenerationRequest, Message, SamplingParams, TokenAttention, TokenEvent


@dataclass
class Step:
    """A picked token, its logprob, the top alternatives; on the first step how many prompt tokens the
    cache held; where the token looked when asked (and then, on the first step, the prompt's tokens)."""

    token: int
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)
    top_ids: list[int] = field(default_factory=list)
    cached: int | None = None
    attention: TokenAttention | None = None
    prompt_tokens: list[str] | None = None


class LocalBackend:
    """Runs a GGUF file or Hugging Face folder on our Transformer.

    model: None (the default model, pulled on first use), a pulled model's name, a path to
    a .gguf file or model folder, or a Hugging Face repo id (needs the network).
    precision: "fast" (the default: GGUF weights stay quantized), "exact" (float32, token-exact
    against transformers), "int8" or "int4" (float weights quantized at load too); see loader.py.
    compile: torch.compile the decode step (faster tokens after a few seconds of compiling).
    adapter: a LoRA adapter folder from `tokentrail train` (see lora.py), applied in either precision.
    parallel: above 1, requests from several threads decode together, up to this many in one batch
    (continuous batching, see batch.py); a request that asks for attention weights runs alone. In exact
    precision a seeded request's tokens do not depend on what runs beside it; in fast they may.
    """

    name = "local"
    supports_constraints = supports_tool_calls = supports_logprobs = supports_attention = True

    def __init__(
        self,
        model: str | Path | None = None,
        dtype: str | None = None,
        device: str | None = None,
        attention: str | None = None,
        precision: str | None = None,
        compile: bool = False,
        context_window: int | None = None,
        auto_pull: bool = True,
        progress: Progress | None = None,
        adapter: str | Path | None = None,
        parallel: int = 1,
    ) -> None:
        check_precision(precision or "fast")  # before a pull, not after
        if not isinstance(parallel, int) or not 1 <= parallel <= 64:
            raise BackendError(f"parallel must be a whole number from 1 to 64 (sequences decoded together), not {parallel!r}")
        try:
            path = resolve(str(model) if model is not None else None, auto_pull=auto_pull, progress=progress)
            self.loaded: LoadedModel = load_model(path, dtype=dtype, device=device, precision=precision or "fast")
        except ModelLoadError as exc:
            raise BackendError(str(exc)) from exc
        self.adapter = Path(adapter).name if adapter else None
        if adapter:
            try:
                lora.load(self.loaded.model, adapter, self.loaded.name)
            except lora.AdapterError as exc:
                raise BackendError(str(exc)) from exc
        self.device = self.loaded.model.device
        self.attention = attention_impl.choose(self.device, attention, precision or "fast")
        self.loaded.model.set_attention(self.attention)
        if compile:
            self.loaded.model.compile_decode()
        self.tokenizer: LocalTokenizer = self.loaded.tokenizer
        limit = self.loaded.config.context_length
        self.context_window = min(context_window, limit) if context_window else limit
        # the adapter is part of the model's name: in run traces, the chat's status bar, the server's model list
        self.model_name = f"{self.loaded.name}+{self.adapter}" if self.adapter else self.loaded.name
        self._lock = threading.Lock()  # one decode at a time per model: the KV cache is shared
        self.parallel = parallel
        # exact: the batch always has `parallel` rows, so a row's bits never depend on the others (batch.py);
        # fast: as many rows as requests, so that one request alone decodes at the one-at-a-time speed
        fixed = self.loaded.precision == "exact"
        self.batcher = Batcher(self.loaded.model, parallel, self._lock, self.tokenizer.display, fixed) if parallel > 1 else None
        self.loaded.model.snapshots.budget = PREFIX_CACHE_BYTES * parallel  # each concurrent conversation keeps its prefix

    def render(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True) -> str:
        tok = self.tokenizer
        try:
            return render_chat(
                self.loaded.chat_template or CHATML,
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=tok.token_text(tok.bos_token_id) if tok.bos_token_id is not None else "",
                eos_token=tok.token_text(tok.eos_token_id) if tok.eos_token_id is not None else "",
            )
        except ChatTemplateError as exc:
            raise BackendError(f"{self.loaded.source}: {exc}") from exc

    def _encoded(self, request: GenerationRequest) -> list[int]:
        return self.tokenizer.encode(self.render(request.messages, request.tools))

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        ids = self._encoded(request)
        if len(ids) >= self.context_window:
            raise BackendError(
                f"the prompt is {len(ids)} tokens; the context window of {self.model_name} is "
                f"{self.context_window}. Shorten the conversation."
            )
        return ids

    @property
    def tool_format(self) -> ToolFormat | None:
        """How this model's chat template writes tool calls; None when it knows no tools."""
        return native_format(self.loaded.chat_template or CHATML)

    @property
    def native_tool_calls(self) -> bool:
        return self.tool_format is not None

    def _prepared(self, request: GenerationRequest) -> tuple[GenerationRequest, ToolFormat | None, list[int]]:
        """(the request as the engine runs it, the format of the calls its reply may hold, its prompt ids)."""
        request, calls = self._with_tools(request)
        return request, calls, self.prompt_ids(request)

    def _with_tools(self, request: GenerationRequest) -> tuple[GenerationRequest, ToolFormat | None]:
        return tool_calls.prepare(request, self.loaded.chat_template or CHATML, self.tokenizer)

    def count_prompt(self, request: GenerationRequest) -> int:
        """How many tokens the request's prompt takes, as stream() will build it (even past the context window)."""
        return len(self._encoded(self._with_tools(request)[0]))

    def stream(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        names = tool_calls.callable_names(request)
        request, calls, prompt = self._prepared(request)
        if request.sampling.beam_width > 1:
            return iter(self._beam_search(prompt, request).events)
        return self._stream(prompt, request, calls, names)

    def generate(self, request: GenerationRequest) -> Generation:
        names = tool_calls.callable_names(request)
        request, calls, prompt = self._prepared(request)
        if request.sampling.beam_width > 1:
            return self._beam_search(prompt, request)
        return collect(self._stream(prompt, request, calls, names), len(prompt))

    def _stream(self, prompt: list[int], request: GenerationRequest, calls: ToolFormat | None = None,
                names: Sequence[str] = ()) -> Iterator[TokenEvent]:
        events = self._events(self._sampled(prompt, request), request.sampling, self._budget(prompt, request))
        return tool_calls.with_parsed_calls(events, calls, names) if calls else events

    def _budget(self, prompt: list[int], request: GenerationRequest) -> int:
        return min(request.sampling.max_tokens, self.context_window - len(prompt))

    def _sampler(self, prompt: list[int], request: GenerationRequest) -> Sampler:
        """Built before generation starts, so that a bad constraint fails at once."""
        mask = None
        if request.constraint is not None:
            mask = GrammarMask(request.constraint, self.tokenizer, self.loaded.config.vocab_size)
        return Sampler(request.sampling, self.device, prompt, mask)

    def continue_from(self, request: GenerationRequest, token_ids: Sequence[int]) -> Iterator[TokenEvent]:
        """A branch: the reply to `request` that begins with `token_ids` (a reply's first tokens, the last one
        perhaps an alternative it beat), continued by the model. Yields the new tokens' events; max_tokens
        counts the whole reply; tool calls in it are not parsed. The prompt's whole chunks come from the
        prefix cache, so a branch computes its new tokens, the given ones and the prompt's last partial
        chunk (under PREFILL_CHUNK)."""
        request, _, prompt = self._prepared(request)
        if request.sampling.beam_width > 1:
            raise BackendError("a branch is sampled, not beam searched; use beam_width=1")
        given, vocab, eos = list(token_ids), self.loaded.config.vocab_size, set(self.tokenizer.eos_token_ids)
        if any(not 0 <= t < vocab for t in given):
            raise BackendError(f"the branch's token ids must lie in [0, {vocab}); got {given}")
        if ended := [i for i, t in enumerate(given) if t in eos]:
            raise BackendError(f"the branch's token {ended[0]} ends the reply; there is nothing to continue")
        sampler = self._sampler(prompt, request)
        for i, token in enumerate(given):
            try:
                sampler.force(token)
            except ValueError as exc:
                raise BackendError(f"token {i} of the branch ({self.tokenizer.display(token)!r}): {exc}") from exc
        context = prompt + given
        budget = min(request.sampling.max_tokens - len(given), self.context_window - len(context))
        if budget < 1:
            raise BackendError(f"the branch is {len(given)} tokens after a {len(prompt)}-token prompt: no room is left "
                               f"under max_tokens {request.sampling.max_tokens} and the context window "
                               f"{self.context_window}")
        return self._events(self._sampled(context, request, sampler, budget), request.sampling, budget, given)

    def _sampled(self, prompt: list[int], request: GenerationRequest, sampler: Sampler | None = None,
                 budget: int | None = None) -> Iterator[Step]:
        sampler, alternatives = sampler or self._sampler(prompt, request), request.sampling.logprobs
        display, watch, model = self.tokenizer.display, request.sampling.attention, self.loaded.model
        budget = budget or self._budget(prompt, request)
        if self.batcher is not None and not watch:
            return self._batched(BatchSequence(list(prompt), sampler, budget, alternatives))

        def steps() -> Iterator[Step]:
            with self._lock:
                step = Step(0, 0.0, cached=prepare_cache(model, prompt, budget),
                            prompt_tokens=[display(i) for i in prompt] if watch else None)
                context = list(prompt)
                model.record_attention(bool(watch))
                try:
                    for token, logprobs in decode(model, prompt, sampler, budget):
                        step.token, step.logprob = token, float(logprobs[token])
                        step.top, step.top_ids = top_alternatives(logprobs, alternatives, display)
                        if watch:  # the generator is paused after the forward that gave this token's logits
                            step.attention = token_attention(model.looked(), context, watch, display)
                            context.append(token)
                        yield step
                        step = Step(0, 0.0)
                finally:
                    model.record_attention(False)

        return steps()

    def _batched(self, sequence: BatchSequence) -> Iterator[Step]:
        steps = self.batcher.submit(sequence)
        try:
            for token, logprob, top, ids, cached in steps:
                yield Step(token, logprob, top, ids, cached)
        finally:
            steps.close()  # a consumer that stops early frees the sequence's slot at the next step

    def _events(self, steps: Iterator[Step], params: SamplingParams, budget: int,
                given: Sequence[int] = ()) -> Iterator[TokenEvent]:
        """Token steps as events: detokenized (after the `given` tokens a branch starts with), stop strings
        held back, finish reason on the last."""
        detok, stops = IncrementalDetokenizer(self.tokenizer), StopMatcher(params.stop)
        for token in given:  # their text is the branch's; what they hold back of a character comes out next
            detok.push(token)
        eos = set(self.tokenizer.eos_token_ids)
        for count, step in enumerate(steps, start=1):
            token = step.token
            if token in eos:
                text, finish = "", "eos"
            else:
                text, stopped = stops.push(detok.push(token))
                finish = "stop" if stopped else ("length" if count == budget else None)
            if finish in ("eos", "length"):
                text += stops.push(detok.flush())[0] + stops.flush()
            yield TokenEvent(
                text=text, token_id=token, token=self.tokenizer.display(token), logprob=step.logprob,
                top_logprobs=step.top, top_token_ids=step.top_ids, finish_reason=finish, cached_prompt_tokens=step.cached,
                attention=step.attention, prompt_tokens=step.prompt_tokens,
            )
            if finish:
                return

    def _beam_search(self, prompt: list[int], request: GenerationRequest) -> Generation:
        params = request.sampling
        if request.constraint is not None:
            raise BackendError("beam search does not combine with a constraint; use beam_width=1")
        budget = self._budget(prompt, request)
        with self._lock:
            beams = CachedBeams(self.loaded.model, prompt, params.beam_width, budget)
            best = beam_search(beams, params.beam_width, budget, self.tokenizer.eos_token_ids,
                               params.length_penalty, params.early_stopping)
        tokens = best.tokens + ([self.tokenizer.eos_token_id] if best.finished else [])
        steps = (Step(t, lp, cached=0 if i == 0 else None) for i, (t, lp) in enumerate(zip(tokens, best.logprobs)))
        generation = collect(self._events(steps, params, budget), len(prompt))
        return generation.model_copy(update={"score": best.score})

    def logits(self, token_ids: Sequence[int]) -> torch.Tensor:
        """[len(token_ids), vocab] float32 logits of one forward pass, for evaluation."""
        if not token_ids:
            raise ValueError("logits() needs at least one token id")
        if len(token_ids) > self.context_window:
            raise BackendError(f"{len(token_ids)} tokens exceed the context window of {self.context_window}")
        vocab = self.loaded.config.vocab_size
        if min(token_ids) < 0 or max(token_ids) >= vocab:
            raise ValueError(f"token ids must lie in [0, {vocab})")
        model = self.loaded.model
        with self._lock, torch.inference_mode():
            model.setup_cache(1, len(token_ids))
            out = model(torch.tensor([list(token_ids)], device=self.device), start=0)
        return out[0].float().cpu()
