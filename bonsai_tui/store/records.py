"""What the history returns: a conversation's row in the list, the whole conversation, its messages,
and how a reply ended (its status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TITLE_LENGTH = 60

# A reply's status: how it ended. User and system messages are always complete.
COMPLETE = "complete"
STOPPED = "stopped"  # the user stopped it; the partial text is kept
_STATUS_BY_STOP_REASON = {"eos": COMPLETE, "cancelled": STOPPED}  # other reasons are kept as they are
_STOP_REASON_BY_STATUS = {status: reason for reason, status in _STATUS_BY_STOP_REASON.items()}


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the history list."""

    id: int
    title: str
    created: float  # Unix time
    updated: float
    model: str
    message_count: int


@dataclass(frozen=True)
class StoredMessage:
    id: int
    position: int  # 0, 1, 2, ... within its conversation
    role: str  # "user" | "assistant" | "system"
    content: str
    status: str  # COMPLETE, STOPPED, or a stop reason such as "max_tokens" / "context_full"
    prompt_tokens: int | None
    generated_tokens: int | None
    stats: dict[str, Any] | None  # the reply's generation stats, as given to add_message
    created: float
    context: str | None = None  # a question's documents block, as the model was sent it
    sources: tuple[dict[str, Any], ...] = ()  # the passages in it: {path, start_line, end_line, heading, score, text}

    @property
    def stop_reason(self) -> str | None:
        """The engine's StopReason value for a reply with stats, else None."""
        if self.stats is None:
            return None
        return _STOP_REASON_BY_STATUS.get(self.status, self.status)

    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Conversation:
    """A whole conversation: what `load_conversation` returns and `export` writes."""

    id: int
    title: str
    created: float
    updated: float
    model: str
    system_prompt: str
    params: dict[str, Any]  # sampling parameters (and max_tokens), as given to set_params
    preset: str
    messages: list[StoredMessage]


def reply_status(stop_reason: str) -> str:
    """The status stored for a reply that ended with the engine's `stop_reason` value."""
    return _STATUS_BY_STOP_REASON.get(stop_reason, stop_reason)


def title_from(text: str) -> str:
    """A conversation title from its first user message: the first line, shortened."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"
