"""Request and response bodies of the HTTP API (pydantic; strict types, unknown keys rejected).

Limits that depend on the settings (``k`` up to ``max_k``, history and batch sizes) are checked
again by the app; the bounds here are the hard ceilings every deployment shares.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Id = Annotated[str, Field(min_length=1, max_length=256)]
DomainName = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HistoryItem(Strict):
    """An item of any domain the user interacted with."""

    domain: DomainName
    item_id: Id


def _history_string(value: Any) -> Any:
    """``"domain:item_id"`` -> ``{"domain": ..., "item_id": ...}``; objects pass through."""
    if isinstance(value, str):
        domain, sep, item = value.partition(":")
        if not sep or not domain or not item:
            raise ValueError("a history string must look like 'domain:item_id'")
        return {"domain": domain, "item_id": item}
    return value


HistoryEntry = Annotated[
    HistoryItem, BeforeValidator(_history_string, json_schema_input_type=str | HistoryItem)
]


class RecommendRequest(Strict):
    """``POST /recommend``: a known user, a user known only in a source domain, an anonymous
    user with their own ``history``, or an unknown user (popular fallback)."""

    user_id: Id | None = None
    domain: DomainName | None = Field(None, description="default: the bundle's target domain")
    k: int = Field(10, ge=1, le=10_000)
    exclude_seen: bool = True
    history: list[HistoryEntry] | None = Field(
        None, max_length=10_000,
        description="items as 'domain:item_id' strings or {domain, item_id} objects")
    explain: bool = False

    @model_validator(mode="after")
    def _someone(self) -> RecommendRequest:
        if self.user_id is None and not self.history:
            raise ValueError("give user_id, history, or both")
        return self


class Because(BaseModel):
    """A history item that supports a recommendation (co-occurrence cosine ``weight``)."""

    domain: str
    item_id: str
    weight: float


class Signal(BaseModel):
    """A model's own reason for an item (the ranker: a feature's SHAP contribution, in words)."""

    feature: str
    weight: float
    reason: str


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    because: list[Because] | None = None
    signals: list[Signal] | None = None


class RecommendResponse(BaseModel):
    user_id: str | None
    domain: str
    strategy: str = Field(description="model | popular_fallback")
    basis: str = Field(description="target | source_only | request_history | none")
    model_version: str
    items: list[RecommendedItem]
    ignored_history: int = Field(0, description="history items unknown to the model")


class TextRequest(Strict):
    """``POST /recommend/text``: a free-text need."""

    text: str = Field(min_length=1, max_length=2000)
    domain: DomainName | None = None
    k: int = Field(10, ge=1, le=10_000)


class TextResponse(BaseModel):
    domain: str
    strategy: str
    model_version: str
    items: list[RecommendedItem]


class EventIn(Strict):
    """One interaction; ``event_id`` makes a retry idempotent (stored once)."""

    event_id: Id
    user_id: Id
    domain: DomainName
    item_id: Id
    timestamp: int | None = Field(None, ge=0, le=10**13, description="default: time received")
    rating: float | None = Field(None, allow_inf_nan=False)


class EventsRequest(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class EventsResponse(BaseModel):
    stored: int
    duplicates: int


class ReloadResponse(BaseModel):
    """``POST /admin/reload`` and ``/admin/rollback``: the version served now and the one
    before."""

    status: str = Field(description="reloaded | unchanged | restarting | failed | "
                        "refused | unavailable")
    model_version: str
    previous_version: str
    seconds: float | None = None
    detail: str | None = None


class Status(BaseModel):
    status: str
    model_version: str | None = None
    detail: str | None = None
