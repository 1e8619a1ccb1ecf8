"""LoRA fine-tuning of a packaged sentence encoder on one domain's interactions (``peft``).

The encoder learns that a user's earlier items predict their next one: for a training example
(a user, position ``t`` of their time-ordered sequence in the domain), the user vector is the
normalised mean of the encoder's vectors of the ``history`` items before ``t``, the positive is
the vector of item ``t``, and the other positives of the batch are the negatives (InfoNCE at
``temperature``; another example with the same positive item is masked out, not a negative).
Only the low-rank adapters of ``target_modules`` train; the base weights stay frozen (bit for
bit) and the adapter is applied unmerged at encoding time.

Bounded and deterministic for a seed: at most ``max_users`` users (a seeded sample), at most
``max_steps`` steps of ``batch_size`` examples in seeded epoch orders, adapter initialisation
and dropout from a seeded torch generator. The encoder's ``key`` is the base key plus a digest
of the settings, the seed and the exact training examples (texts), so the vector cache never
mixes base and tuned vectors; the adapter is saved under ``$CROSSREC_CACHE/lora/<key>/`` and
reused by any later encoder with the same key (no training)::

    enc = lora_encoder(train, "office", LoraConfig(max_steps=200))
    vectors = encode_items(item_texts(train), enc)   # trains (or loads) on first use
    enc.report.summary()

Needs ``pip install 'peft==0.21.2'`` (the ``lora`` extra).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossrec.encoders.base import torch_threads
from crossrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from crossrec.data.dataset import MultiDomainDataset
    from crossrec.encoders.sentence import SentenceTransformerEncoder

INSTALL = "pip install 'peft==0.21.2'"
REPORT_FILE = "report.json"


class LoraConfig(BaseModel):
    """LoRA adapter and contrastive-tuning settings (all in the tuned encoder's key).

    Attributes:
        rank: rank ``r`` of each adapter.
        alpha: LoRA scaling numerator (the update is ``alpha / rank * B @ A``).
        dropout: dropout on the adapter's input while training.
        target_modules: names of the ``nn.Linear`` modules that get an adapter (BERT attention:
            ``query``, ``key``, ``value``; also ``dense``).
        history: previous items (k) whose mean vector represents the user.
        temperature: InfoNCE temperature of the cosine logits.
        max_users: users sampled (seeded) among those with two or more interactions.
        max_steps: optimiser steps (fewer if the sample has fewer than 2 examples per batch).
        batch_size: examples per step (the in-batch negatives).
        max_seq_length: tokens per text while training (encoding keeps the encoder's own).
        learning_rate: AdamW learning rate (constant).
        weight_decay: AdamW weight decay of the adapter weights.
        seed: user sample, example order, adapter initialisation and dropout.
        domain: domain whose training interactions tune the encoder; None = the target domain
            given to ``TextConfig.item_vectors`` (or the only domain of the data).
        threads: torch CPU threads while training and encoding (None = leave torch's setting;
            not in the key). 1 is far faster than 2 on cores other jobs keep busy (a 6-step
            test run: 2 s with 1 thread, 42 s with 2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(8, ge=1, le=256)
    alpha: float = Field(16.0, gt=0.0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("query", "value")
    history: int = Field(5, ge=1)
    temperature: float = Field(0.05, gt=0.0)
    max_users: int = Field(2000, ge=2)
    max_steps: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=2)
    max_seq_length: int = Field(64, ge=4, le=512)
    learning_rate: float = Field(3e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    seed: int = 0
    domain: str | None = None
    threads: int | None = Field(1, ge=1)

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not isinstance(m, str) or not m.strip() for m in v):
            raise ValueError(f"target_modules must be non-empty module names, got {v!r}")
        return v

    def settings(self) -> dict[str, Any]:
        """What changes the adapter besides the data (``domain`` acts through the data)."""
        return self.model_dump(exclude={"domain", "threads"}, mode="json")


@dataclass(frozen=True)
class Examples:
    """Training examples of one domain: ``history`` ``int64 [N, k]`` item idx left-padded with
    -1 (oldest first), ``target`` ``int64 [N]`` the next item, ``users`` the sampled users."""

    history: np.ndarray
    target: np.ndarray
    users: np.ndarray

    def digest(self, texts: Sequence[str]) -> str:
        """sha256 hex of the examples as texts (what the encoder actually sees)."""
        h = hashlib.sha256()
        for row, t in zip(self.history, self.target, strict=True):
            h.update("\x1f".join([texts[i] for i in row if i >= 0] + ["->", texts[t]]).encode())
            h.update(b"\x1e")
        return h.hexdigest()


def training_examples(train: MultiDomainDataset, domain: str, texts: Sequence[str],
                      config: LoraConfig) -> Examples:
    """One example per position ``t >= 1`` of each sampled user's sequence in ``domain``
    (texts of the items before it, at most ``config.history``, and item ``t``); examples whose
    target text or whole history text is empty are dropped.

    Raises:
        ConfigError: ``domain`` is not a domain of ``train``.
        DataError: fewer than two examples.
    """
    from crossrec.data.sequence import user_sequences

    if domain not in train.domains:
        raise ConfigError(f"LoRA tuning domain {domain!r} is not in the data; domains: "
                          f"{', '.join(train.domains)}")
    seq = user_sequences(train, (domain,))
    users = np.flatnonzero(seq.lengths() >= 2)
    if len(users) > config.max_users:
        rng = np.random.default_rng([config.seed, 0])
        users = np.sort(rng.choice(users, size=config.max_users, replace=False))
    k, hist, target, owner = config.history, [], [], []
    for u in users:
        items = seq.of(u)
        for t in range(1, len(items)):
            prev = [i for i in items[max(0, t - k):t] if texts[i]]
            if texts[items[t]] and prev:
                hist.append(np.asarray(prev, dtype=np.int64))
                target.append(int(items[t]))
                owner.append(int(u))
    if len(target) < 2:
        raise DataError(f"LoRA tuning needs at least 2 examples (users with 2+ {domain!r} "
                        f"interactions and item text); found {len(target)}")
    width = np.full((len(hist), k), -1, dtype=np.int64)
    for r, h in enumerate(hist):
        width[r, k - len(h):] = h
    return Examples(width, np.asarray(target, np.int64),
                    np.unique(np.asarray(owner, np.int64)))


@dataclass(frozen=True)
class LoraReport:
    """What the tuning did (saved beside the adapter; ``reused`` when read back).

    Attributes:
        key: the tuned encoder's key.
        trainable_params, total_params: adapter parameters trained; base encoder parameters.
        steps, seconds: optimiser steps; training wall time (of the original run when reused).
        users, examples: users in the sample; training examples.
        loss_first, loss_last: mean training loss of the first / last tenth of the steps (1 to
            10 steps).
        probe_before, probe_after: loss on a fixed set of up to ``4 * batch_size`` training
            examples (dropout off) before / after training.
        losses: every step's training loss.
        reused: the adapter was loaded from the store, not trained now.
    """

    key: str
    trainable_params: int
    total_params: int
    steps: int
    seconds: float
    users: int
    examples: int
    loss_first: float
    loss_last: float
    probe_before: float
    probe_after: float
    losses: tuple[float, ...]
    reused: bool = False

    @property
    def trainable_share(self) -> float:
        """Trained parameters / the base encoder's parameters."""
        return self.trainable_params / self.total_params

    def summary(self) -> str:
        """One readable line."""
        how = "reused the saved adapter" if self.reused else f"trained {self.seconds:.0f} s"
        return (f"LoRA {how}: {self.trainable_params:,} of {self.total_params:,} parameters "
                f"({100 * self.trainable_share:.2f} %), {self.steps} steps on {self.examples:,} "
                f"examples of {self.users:,} users; loss {self.loss_first:.3f} -> "
                f"{self.loss_last:.3f} (probe {self.probe_before:.3f} -> "
                f"{self.probe_after:.3f})")


def _features(st: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """Tokenised ``texts`` on the model's device (``preprocess``: sentence-transformers 6)."""
    return {k: v.to(st.device) if hasattr(v, "to") else v
            for k, v in st.preprocess(texts).items()}


def infonce(st: Any, examples: Examples, rows: np.ndarray, texts: Sequence[str],
            temperature: float) -> torch.Tensor:
    """InfoNCE loss of the examples ``rows`` with in-batch negatives (scalar tensor).

    Every distinct item of the batch is encoded once: ``[U, D]`` normalised vectors; users
    ``[B, D]`` = normalised mean of their history rows; logits ``[B, B]`` = cosine / T, the
    same positive item elsewhere in the batch masked out.
    """
    import torch

    hist, target = examples.history[rows], examples.target[rows]
    uniq, inverse = np.unique(np.concatenate([hist[hist >= 0], target]), return_inverse=True)
    vec = st(_features(st, [texts[i] for i in uniq]))["sentence_embedding"]  # [U, D]
    vec = torch.nn.functional.normalize(vec, dim=1)
    pos = np.searchsorted(uniq, np.maximum(hist, 0))  # [B, k] rows of vec (padding masked)
    mask = torch.from_numpy(hist >= 0).to(vec.dtype)  # [B, k]
    user = (vec[torch.from_numpy(pos)] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    user = torch.nn.functional.normalize(user, dim=1)  # [B, D]
    item = vec[torch.from_numpy(inverse[-len(target):])]  # [B, D]
    logits = user @ item.T / temperature  # [B, B]
    t = torch.from_numpy(target)
    dup = (t[:, None] == t[None, :]) & ~torch.eye(len(t), dtype=torch.bool)
    logits = logits.masked_fill(dup, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(t)))


class LoraEncoder:
    """A TextEncoder: the base sentence encoder with a LoRA adapter tuned on ``examples``.

    The adapter is trained (or loaded from ``store``) on the first ``encode`` or ``fit``; the
    instance owns its base encoder (the adapter is injected into its modules).

    Args:
        base: a torch-backend SentenceTransformerEncoder (freshly loaded, not shared).
        config: the LoRA settings.
        examples: the training examples; texts: item texts indexed by item idx.
        store: root folder of saved adapters (``<store>/<key slug>/``); None = keep in memory.
        data, domain: what the examples were drawn from (for callers that reuse an instance).

    Attributes:
        progress: print training progress when ``encode`` trains.
    """

    def __init__(self, base: SentenceTransformerEncoder, config: LoraConfig,
                 examples: Examples, texts: Sequence[str], *, store: Path | None,
                 data: MultiDomainDataset | None = None, domain: str | None = None) -> None:
        if getattr(base, "backend", None) != "torch" or not hasattr(base, "model"):
            raise ConfigError(f"LoRA tuning needs a sentence-transformers encoder with the "
                              f"'torch' backend; got key {getattr(base, 'key', base)!r}")
        self.base, self.config, self.examples, self.texts = base, config, examples, texts
        prefix = getattr(getattr(base, "spec", None), "prefix", "")  # e5: "passage: "
        self._inputs = [prefix + t for t in texts] if prefix else texts  # what it encodes
        blob = json.dumps({"settings": config.settings(), "data": examples.digest(texts)},
                          sort_keys=True)
        self.key = f"{base.key}+lora:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
        self.dim = base.dim
        self.store = None if store is None else Path(store) / re.sub(r"[^A-Za-z0-9_.-]+", "_",
                                                                     self.key)
        self.report: LoraReport | None = None
        self.peft_model: Any = None
        self.data, self.domain, self.progress = data, domain, False

    def fit(self, *, progress: bool = False) -> LoraReport:
        """Load the saved adapter of this key, else train it (and save it); idempotent."""
        if self.report is not None:
            return self.report
        try:
            import peft
        except ImportError:
            raise ConfigError(f"LoRA tuning needs the package 'peft': {INSTALL}") from None
        with torch_threads(self.config.threads):
            return self._fit(peft, progress)

    def _fit(self, peft: Any, progress: bool) -> LoraReport:
        bert = self.base.model[0].auto_model
        saved = self.store is not None and (self.store / REPORT_FILE).is_file()
        with warnings.catch_warnings():  # transformers' deprecation notices inside peft
            warnings.simplefilter("ignore", FutureWarning)
            if saved:
                self.peft_model = peft.PeftModel.from_pretrained(bert, str(self.store))
                fields = json.loads((self.store / REPORT_FILE).read_text(encoding="utf-8"))
                self.report = LoraReport(**{**fields, "losses": tuple(fields["losses"]),
                                            "reused": True})
            else:
                self.report = self._train(peft, bert, progress)
        self.base.model.eval()
        return self.report

    def _train(self, peft: Any, bert: Any, progress: bool) -> LoraReport:
        import torch

        c, ex, st = self.config, self.examples, self.base.model
        total = sum(p.numel() for p in st.parameters())
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            lcfg = peft.LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                                   target_modules=list(c.target_modules), bias="none")
            try:
                model = peft.get_peft_model(bert, lcfg)
            except ValueError as e:
                raise ConfigError(f"LoRA target_modules {list(c.target_modules)}: {e}") from None
            self.peft_model = model
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
            rng = np.random.default_rng([c.seed, 1])
            probe = rng.permutation(len(ex.target))[: 4 * c.batch_size]
            old_len = st.max_seq_length
            st.max_seq_length = c.max_seq_length
            try:
                before = self._probe(probe)
                losses: list[float] = []
                while len(losses) < c.max_steps:  # epochs (N >= 2: each has a batch of 2+)
                    order = rng.permutation(len(ex.target))
                    for s in range(0, len(order) - 1, c.batch_size):
                        if len(losses) == c.max_steps:
                            break
                        st.train()
                        loss = infonce(st, ex, order[s:s + c.batch_size], self._inputs,
                                       c.temperature)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        losses.append(float(loss.detach()))
                        if progress and (len(losses) % 10 == 0 or len(losses) == c.max_steps):
                            print(f"LoRA step {len(losses)}/{c.max_steps}: loss "
                                  f"{np.mean(losses[-10:]):.4f}", flush=True)
                after = self._probe(probe)
            finally:
                st.max_seq_length = old_len
                st.eval()
        n = min(10, max(1, len(losses) // 10))
        report = LoraReport(
            key=self.key, trainable_params=sum(p.numel() for p in params), total_params=total,
            steps=len(losses), seconds=time.perf_counter() - start, users=len(ex.users),
            examples=len(ex.target), loss_first=float(np.mean(losses[:n])),
            loss_last=float(np.mean(losses[-n:])), probe_before=before, probe_after=after,
            losses=tuple(losses))
        if self.store is not None:
            self._save(model, report)
        return report

    def _probe(self, rows: np.ndarray) -> float:
        """Mean InfoNCE of ``rows`` in batches of ``batch_size``, dropout off, no gradient."""
        import torch

        st, c = self.base.model, self.config
        st.eval()
        chunks = [rows[s:s + c.batch_size] for s in range(0, len(rows), c.batch_size)]
        with torch.no_grad():
            values = [float(infonce(st, self.examples, r, self._inputs, c.temperature))
                      for r in chunks if len(r) >= 2]
        return float(np.mean(values))

    def _save(self, model: Any, report: LoraReport) -> None:
        from crossrec.atomic import atomic_directory

        with atomic_directory(self.store) as tmp:
            model.save_pretrained(str(tmp))
            blob = json.dumps({**asdict(report), "reused": False}, indent=1)
            (tmp / REPORT_FILE).write_text(blob, encoding="utf-8")

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``float32 [n, dim]`` L2-normalised vectors through the tuned encoder."""
        if len(texts) and self.report is None:
            self.fit(progress=self.progress)
        with torch_threads(self.config.threads):
            return self.base.encode(texts, batch_size=batch_size)


def lora_encoder(train: MultiDomainDataset, domain: str, config: LoraConfig | dict | None = None,
                 *, encoder: str = "minilm", template: str = "{text}", device: str = "cpu",
                 cache: str | Path | None = "default") -> LoraEncoder:
    """The encoder ``encoder`` tuned with LoRA on ``train``'s interactions in ``domain``.

    Nothing trains here: the key is computed from the settings and the sampled examples;
    ``fit()`` or the first ``encode`` trains, or loads the adapter saved under that key.

    Args:
        train: the training data (its ``domain`` interactions and item texts are used).
        domain: the domain whose user sequences tune the encoder.
        config: LoRA settings (a LoraConfig, its fields as a dict, or None = defaults).
        encoder: registered encoder name (``crossrec.encoders.ENCODERS``).
        template: item-text template (as ``item_texts``; the texts the models encode).
        device: torch device.
        cache: adapter store root, "default" (``$CROSSREC_CACHE/lora``) or None (in memory).
    """
    import crossrec.encoders as encoders
    from crossrec.encoders.base import item_texts
    from crossrec.paths import cache_dir

    config = config if isinstance(config, LoraConfig) else LoraConfig(**(config or {}))
    texts = item_texts(train, template)
    examples = training_examples(train, domain, texts, config)
    base = encoders.load_encoder(encoder, device=device)
    store = cache_dir() / "lora" if cache == "default" else None if cache is None else Path(cache)
    return LoraEncoder(base, config, examples, texts, store=store, data=train, domain=domain)
