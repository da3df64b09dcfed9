"""What the faces (CLI, chat) ask of documents: attach, list, remove, and the context for a question.

The service holds no UI: the chat screen calls it from a worker thread (indexing can take a while)
and shows its results; `generate --docs` calls it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bonsai_tui.documents.chunk import estimate_tokens
from bonsai_tui.documents.index import DocumentIndex, IndexReport, Progress
from bonsai_tui.documents.retrieve import DEFAULT_BUDGET_FRACTION, Retrieval, budget_for, retrieve
from bonsai_tui.store import Store

TokenCounter = Callable[[str], int]
MIN_BUDGET_TOKENS = 256  # below this the conversation is full anyway: the context-full dialog follows


class DocumentService(DocumentIndex):
    """The index (attach, detach, attachments, refresh: inherited) and the context for a question."""

    def __init__(self, store: Store, budget_fraction: float = DEFAULT_BUDGET_FRACTION) -> None:
        if not 0 < budget_fraction <= 1:
            raise ValueError(f"the documents' share of the context must be in (0, 1], not {budget_fraction:g}")
        super().__init__(store)
        self.budget_fraction = budget_fraction

    # ---- one question over some paths (generate --docs) ---------------------------------------

    def context_for_paths(
        self,
        paths: Sequence[Path | str],
        question: str,
        context_tokens: int,
        count_tokens: TokenCounter = estimate_tokens,
        progress: Callable[[Progress], None] | None = None,
    ) -> tuple[Retrieval, IndexReport]:
        report = self.index(paths, progress)
        budget = budget_for(context_tokens, self.budget_fraction)
        return retrieve(self, question, report.document_ids, budget, count_tokens), report

    # ---- a conversation's attachments (the chat) ----------------------------------------------

    def context_for_conversation(
        self,
        conversation_id: int,
        question: str,
        context_tokens: int,
        count_tokens: TokenCounter = estimate_tokens,
        free_tokens: int | None = None,
    ) -> tuple[Retrieval, IndexReport] | None:
        """The context for a question in a conversation with attachments (changed files are
        re-indexed first); None when it has none. The block takes the budget's share of the
        context, or less when only `free_tokens` are left (never under MIN_BUDGET_TOKENS)."""
        if not self.attachments(conversation_id):
            return None
        report = self.refresh(conversation_id)
        budget = budget_for(context_tokens, self.budget_fraction)
        if free_tokens is not None:
            budget = min(budget, max(free_tokens, MIN_BUDGET_TOKENS))
        return retrieve(self, question, report.document_ids, budget, count_tokens), report
