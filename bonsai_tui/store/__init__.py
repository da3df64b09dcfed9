"""The conversation history: one SQLite file in the user data dir, safe against crashes and twins.

database.py is the file itself (opened, checked, migrated, moved aside when damaged, one short
transaction per write); schema.py is its tables, as migrations, and the full-text index;
records.py is what a read returns (conversations, messages, how a reply ended);
conversations.py is `Store`, the history's operations: conversations, their messages, search.
The documents' own tables live in the same file; documents/index.py writes them through
`Store.writing()` / `Store.reading()`.
"""

from bonsai_tui.store.conversations import Store, search_terms
from bonsai_tui.store.database import HISTORY_FILE, StoreError, default_path
from bonsai_tui.store.records import (
    COMPLETE,
    STOPPED,
    Conversation,
    ConversationSummary,
    StoredMessage,
    reply_status,
    title_from,
)
from bonsai_tui.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "COMPLETE",
    "HISTORY_FILE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STOPPED",
    "Conversation",
    "ConversationSummary",
    "Store",
    "StoreError",
    "StoredMessage",
    "default_path",
    "reply_status",
    "search_terms",
    "title_from",
]
