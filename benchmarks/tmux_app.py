"""The real app in a real terminal: a tmux session driven through one control-mode client.

Used by benchmarks/key_echo.py. One `tmux -C` client is kept open, so sending a key or reading the
screen is a line written to a pipe (well under a millisecond), not a new `tmux` process each time:
polling the screen every millisecond must not itself take the CPU the app and the engine want.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# the line under each reply: `N tokens · X tok/s · prompt P (C cached) · first token T s[ · note]`
# (no first token when the reply was stopped during its prefill)
STATS = re.compile(
    r"(\d+) tokens · ([\d.]+) tok/s · prompt (\d+) \((\d+) cached\)(?: · first token ([\d.]+) s)?(?: · ([a-z ]+[a-z]))?"
)
BORDER = "│┃▌▐║|"


class Tmux:
    """A detached tmux session running `command` at `width`x`height`, and a control client on it."""

    def __init__(self, command: list[str], width: int, height: int, env: dict[str, str] | None = None) -> None:
        self.name = f"bonsai-bench-{os.getpid()}"
        self.size = (width, height)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        shell = f"{'env ' + exports + ' ' if exports else ''}{shlex.join(command)}; sleep 3600"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), shell], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.name, "window-size", "manual"], check=True)
        subprocess.run(["tmux", "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)], check=True)
        self.client = subprocess.Popen(
            ["tmux", "-C", "attach-session", "-t", self.name, "-f", "no-output,ignore-size"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self._sent = 0

    def command(self, line: str) -> list[str]:
        """Run one tmux command; its output lines. tmux answers each command between %begin and
        %end; a marker printed by a second command names the block before it as the answer."""
        assert self.client.stdin is not None and self.client.stdout is not None
        self._sent += 1
        marker = f"bench-done-{self._sent}"
        self.client.stdin.write(f"{line} ; display-message -p {marker}\n")
        self.client.stdin.flush()
        block: list[str] = []
        answer: list[str] = []
        for raw in self.client.stdout:
            text = raw.rstrip("\n")
            if text.startswith("%begin"):
                block = []
            elif text.startswith("%end") or text.startswith("%error"):
                if block == [marker]:
                    return answer
                answer = block
            else:
                block.append(text)
        raise RuntimeError("the tmux client went away")

    def screen(self) -> str:
        return "\n".join(self.command(f"capture-pane -p -t {self.name}"))

    def keys(self, *keys: str) -> None:
        """tmux key names (Enter, Escape, C-u) or one literal string with `literal=`."""
        self.command(f"send-keys -t {self.name} " + " ".join(shlex.quote(k) for k in keys))

    def type(self, text: str) -> None:
        self.command(f"send-keys -t {self.name} -l {shlex.quote(text)}")

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal delivers pasted text."""
        path = Path(f"/tmp/{self.name}.paste")
        path.write_text(text)
        self.command(f"load-buffer -b bench {path}")
        self.command(f"paste-buffer -p -d -b bench -t {self.name}")

    def until(self, condition: Callable[[str], bool], timeout: float = 600, poll: float = 0.02) -> tuple[str, float]:
        """Poll the screen until `condition(screen)`; the screen and when it was seen."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            now = time.perf_counter()
            if condition(text):
                return text, now
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s; the screen:\n{text}")
            time.sleep(poll)

    def close(self) -> None:
        self.client.stdin.close()  # type: ignore[union-attr]
        self.client.wait(timeout=5)
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


def unframed(screen: str) -> str:
    """The screen's text with box borders and line breaks taken out, so a wrapped line reads whole."""
    return " ".join(line.strip().strip(BORDER).strip() for line in screen.splitlines())


def stats_lines(screen: str) -> list[re.Match[str]]:
    return list(STATS.finditer(re.sub(r"\s+", " ", unframed(screen))))


def status_line(screen: str) -> str:
    """The status bar: the line that shows the context's fill."""
    lines = [line for line in screen.splitlines() if "ctx " in line and "│" in line]
    return lines[-1] if lines else ""
