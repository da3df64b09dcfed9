"""One line under the prompt: the model, the speed of the reply, and how full the context is."""

from __future__ import annotations

from dataclasses import dataclass

from textual.reactive import reactive
from textual.widgets import Static

from engine.session import GenerationStats


@dataclass(frozen=True)
class ModelSummary:
    name: str
    size_bytes: int
    threads: int
    n_ctx: int
    where: str = ""  # a remote server's URL: the chat runs there, not on this machine


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class StatusBar(Static):
    """Shows live decode speed while a reply streams, and prefill speed and TTFT after it."""

    context_used: reactive[int] = reactive(0)
    live_tok_s: reactive[float | None] = reactive(None)  # set while a reply streams
    last_stats: reactive[GenerationStats | None] = reactive(None)
    thinking: reactive[bool] = reactive(False)

    def __init__(self, model: ModelSummary, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.model = model

    def render(self) -> str:
        """Speed first: it is what changes, and the line is cut at the right on narrow terminals."""
        m = self.model
        parts = []
        if self.live_tok_s is not None:
            parts.append(f"{self.live_tok_s:.1f} tok/s")
        elif self.last_stats is not None:
            s = self.last_stats
            parts.append(f"{s.decode_tok_s:.1f} tok/s · prefill {s.prefill_tok_s:.0f} tok/s · TTFT {s.ttft_s:.2f} s")
        used = self.context_used
        if m.n_ctx:
            parts.append(f"ctx {used}/{m.n_ctx} ({100 * used / m.n_ctx:.0f}%)")
        else:
            parts.append(f"ctx {used}")
        if m.where:
            parts.append(f"{m.name} @ {m.where}")
        else:
            parts += [f"{m.name} ({human_size(m.size_bytes)})", f"{m.threads} thread{'s' if m.threads > 1 else ''}"]
        if self.thinking:
            parts.append("thinking on")
        return " │ ".join(parts)
