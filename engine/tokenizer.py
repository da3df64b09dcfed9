"""The model's tokenizer, rebuilt from GGUF metadata as a Hugging Face `tokenizers` byte-level BPE.

The GGUF carries the vocabulary (`tokenizer.ggml.tokens`), the merge rules, each token's type and
the pre-tokenizer's name; with Qwen2's split regex and GPT-2's byte-to-unicode mapping that is all
`tokenizers` needs to give the same ids as the model's own tokenizer.json, without downloading it.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from engine.errors import ModelFileError

# Qwen2/Qwen3 pre-tokenizer (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2, HF tokenizer.json "Split")
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SUPPORTED_PRE = ("qwen2",)
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters back to raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


@lru_cache(maxsize=1)
def byte_translation() -> dict[int, int]:
    """byte_decoder as a str.translate table: stand-in character -> the character of its byte's
    value, so `.encode("latin-1")` gives the raw bytes; other characters become "?"."""
    table = dict.fromkeys(range(256), ord("?"))
    table.update({ord(char): byte for char, byte in byte_decoder().items()})
    return table


class BonsaiTokenizer:
    """encode / decode text, and the raw bytes of each token for UTF-8-safe streaming."""

    def __init__(self, metadata: Mapping[str, Any], path: str | Path = "model.gguf") -> None:
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ModelFileError(path, f"unsupported tokenizer {model!r} (expected gpt2 byte-level BPE)")
        pre = metadata.get("tokenizer.ggml.pre", "qwen2")
        if pre not in SUPPORTED_PRE:
            raise ModelFileError(path, f"unsupported pre-tokenizer {pre!r} (expected qwen2)")
        tokens: list[str] = metadata["tokenizer.ggml.tokens"]
        types: Sequence[int] = metadata.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
        merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
        self.special_ids = {i for i, t in enumerate(types) if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)}
        self.control_ids = frozenset(i for i in self.special_ids if types[i] == TOKEN_CONTROL)
        self._tokenizer = self._build(tokens, merges, types)
        eos = metadata.get("tokenizer.ggml.eos_token_id")
        stop = {i for i in map(self.token_id, STOP_TOKENS) if i is not None}
        self.stop_ids = frozenset(stop | ({int(eos)} if eos is not None else set()))
        self.eos_id = int(eos) if eos is not None else None
        to_bytes = byte_translation()
        self._bytes = [
            tok.encode("utf-8") if i in self.special_ids else tok.translate(to_bytes).encode("latin-1", "replace")
            for i, tok in enumerate(tokens)
        ]

    def _build(self, tokens: list[str], merges: list[tuple[str, ...]], types: Sequence[int]) -> Tokenizer:
        bpe = models.BPE(vocab={tok: i for i, tok in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False)
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
        specials = [
            AddedToken(tokens[i], special=types[i] == TOKEN_CONTROL, normalized=False)
            for i in sorted(self.special_ids)
        ]
        tokenizer.add_tokens(specials)
        return tokenizer

    @property
    def n_vocab(self) -> int:
        return len(self._bytes)

    def encode(self, text: str) -> list[int]:
        """Ids for text; control tokens written in the text (e.g. <|im_start|>) become single ids."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def token_id(self, text: str) -> int | None:
        return self._tokenizer.token_to_id(text)

    def to_json(self) -> str:
        """The `tokenizers` JSON of this tokenizer (llguidance builds its own view from it)."""
        return self._tokenizer.to_str()

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)


class StreamDecoder:
    """Turns tokens into text one at a time without ever emitting half a UTF-8 character:
    bytes of an incomplete character wait for the tokens that complete it. Control tokens
    (<|im_start|>, <|vision_pad|>...) are not text and print nothing; <think> and </think> do."""

    def __init__(self, tokenizer: BonsaiTokenizer) -> None:
        self._bytes = tokenizer.token_bytes
        self._control = tokenizer.control_ids
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if token_id in self._control:
            return ""
        return self._utf8.decode(self._bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
