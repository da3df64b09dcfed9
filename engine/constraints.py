"""Constrained decoding with llguidance: replies that are valid JSON, or valid against a JSON Schema.

At every step the matcher computes which tokens keep the output inside the grammar (a bitmask over
the vocabulary); the logits of all other tokens become -inf before the sampler chain runs, so
penalties, top-k and top-p still choose, only among allowed tokens. Each sampled token is fed back.

    constraint = constraints.json_schema(model, {"type": "object", ...})  # ConstraintError if bad
    for event in session.chat(messages, constraint=constraint): ...

llguidance needs its own view of the tokenizer (the bytes of every token, which ids end a turn);
building it walks the whole vocabulary, so it is built once per model and kept. The grammar is
compiled per request. JSON is generated compact (no optional whitespace): a small model under a
permissive grammar pads with spaces and newlines until the token budget runs out.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.numpy as llg_numpy
import numpy as np

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.model import Model
    from engine.tokenizer import BonsaiTokenizer

# compact JSON: "," and ":" with nothing around them; a schema's own "x-guidance" may override
JSON_OPTIONS = {"whitespace_flexible": False}
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}
# between </think> and the answer the model usually writes a blank line; allow at most that
AFTER_THINKING = r"/[ \n]{0,2}/"
_LIMITS = llguidance.LLParserLimits(verbose_errors=False)


class ConstraintError(EngineError):
    """A schema or grammar llguidance cannot compile (raised before any token is generated)."""


_tokenizers: "weakref.WeakKeyDictionary[BonsaiTokenizer, llguidance.LLTokenizer]" = weakref.WeakKeyDictionary()
_tokenizers_lock = threading.Lock()


def llg_tokenizer(tokenizer: "BonsaiTokenizer") -> llguidance.LLTokenizer:
    """llguidance's tokenizer for ours: from the same `tokenizers` JSON, with our end-of-turn ids.
    Built once per tokenizer (about a second for a 151k vocabulary)."""
    with _tokenizers_lock:
        built = _tokenizers.get(tokenizer)
        if built is None:
            built = llguidance.LLTokenizer(
                tokenizer.to_json(), n_vocab=tokenizer.n_vocab, eos_token=sorted(tokenizer.stop_ids)
            )
            _tokenizers[tokenizer] = built
        return built


def _one_line(message: str) -> str:
    """llguidance's messages may span lines (a regex error draws a caret under the pattern)."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and set(line.strip()) != {"^"}]
    return " ".join(lines)[:300] or "unknown error"


@dataclass(frozen=True)
class Constraint:
    """A checked grammar for one request; `start()` gives a fresh matcher for each reply.

    `schema` is what the reply must be (a JSON Schema; {"type": "object"} for any JSON object).
    With `after_thinking`, a free <think>...</think> block comes first and the schema applies after it.
    """

    tokenizer: "BonsaiTokenizer"
    schema: dict[str, Any]
    description: str  # "JSON object" / "JSON Schema", for messages
    after_thinking: bool = False

    def grammar(self) -> str:
        if not self.after_thinking:
            return llguidance.LLMatcher.grammar_from_json_schema(self.schema, defaults=JSON_OPTIONS)
        think, end_think = (self.tokenizer.token_id(t) for t in ("<think>", "</think>"))
        schema = {**self.schema, "x-guidance": {**JSON_OPTIONS, **self.schema.get("x-guidance", {})}}
        lark = (
            f"start: <[{think}]> /(.|\\n)*/ <[{end_think}]> {AFTER_THINKING} answer\n"
            f"answer: %json {json.dumps(schema)}\n"
        )
        return llguidance.LLMatcher.grammar_from_lark(lark)

    def check(self) -> "Constraint":
        """Compile once to find errors now rather than at the first token; returns self."""
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            self.grammar(), llg_tokenizer(self.tokenizer), limits=_LIMITS
        )
        if is_error:
            raise ConstraintError(f"cannot use this {self.description}: {_one_line(messages[0])}")
        return self

    def with_thinking(self, enable_thinking: bool) -> "Constraint":
        """The same constraint for a reply that starts with a <think> block (when the model has one)."""
        if not enable_thinking or None in (self.tokenizer.token_id("<think>"), self.tokenizer.token_id("</think>")):
            return self
        return Constraint(self.tokenizer, self.schema, self.description, after_thinking=True)

    def start(self) -> "ConstraintMatcher":
        return ConstraintMatcher(self)


class ConstraintMatcher:
    """Follows one reply token by token: masks the logits, then accepts the sampled token."""

    def __init__(self, constraint: Constraint) -> None:
        self._tokenizer = llg_tokenizer(constraint.tokenizer)
        self._matcher = llguidance.LLMatcher(self._tokenizer, constraint.grammar(), log_level=0, limits=_LIMITS)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot use this {constraint.description}: {_one_line(self._matcher.get_error())}")
        self._bitmask = llg_numpy.allocate_token_bitmask(1, self._tokenizer.vocab_size)
        self._n_vocab = self._tokenizer.vocab_size

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """Set the logits of every token the grammar forbids next to -inf, in place; returns logits."""
        llg_numpy.fill_next_token_bitmask(self._matcher, self._bitmask)
        allowed = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: self._n_vocab]
        logits[: self._n_vocab][allowed == 0] = -np.inf
        logits[self._n_vocab :] = -np.inf  # output rows past the tokenizer's vocabulary (padding)
        return logits

    def accept(self, token_id: int) -> None:
        if not self._matcher.consume_token(token_id):
            raise ConstraintError(f"token {token_id} broke the grammar: {_one_line(self._matcher.get_error())}")

    @property
    def complete(self) -> bool:
        """The output so far is a whole answer (the grammar accepts it)."""
        return self._matcher.is_accepting()

    @property
    def finished(self) -> bool:
        """Nothing more may follow (e.g. the object's closing brace): stop without a stop token."""
        return self._matcher.is_stopped()


def _parsed(schema: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as error:
            raise ConstraintError(f"the JSON Schema is not valid JSON: {error}") from None
    if not isinstance(schema, dict):
        raise ConstraintError("a JSON Schema must be a JSON object")
    return schema


def json_schema(model: "Model", schema: dict[str, Any] | str) -> Constraint:
    """Replies valid against `schema` (a dict or its JSON text). Raises ConstraintError (one line)
    when the schema is not JSON, not an object, or uses what llguidance cannot compile."""
    return Constraint(model.tokenizer, _parsed(schema), "JSON Schema").check()


def schema_problem(schema: dict[str, Any] | str) -> str | None:
    """Why `schema` cannot be used (one line), or None; needs no model (for checking as it is typed)."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(_parsed(schema), defaults=JSON_OPTIONS)
    except ConstraintError as error:
        return str(error)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, None, limits=_LIMITS)
    return f"cannot use this JSON Schema: {_one_line(messages[0])}" if is_error else None


def json_object(model: "Model") -> Constraint:
    """Replies that are any one JSON object."""
    return Constraint(model.tokenizer, ANY_JSON_OBJECT, "JSON object").check()
