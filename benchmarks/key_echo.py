"""The app in tmux: key-to-echo while replies stream, each turn's stats line, and Esc in a long prompt.

    python benchmarks/key_echo.py MODEL.gguf [--size 80x24] [--tokens 512] [--turns 3]
        [--interval 0.25] [--stop-test] [--profile TURN]

Starts `bonsai-tui --model MODEL` in a detached tmux session of the given size and talks to it as
a person would (keys into the terminal, the screen read back):

- each turn types a question and Enter, and while the reply streams types one character every
  `--interval` seconds, timing each from the key sent to the character shown in the message box
  (the screen polled every millisecond through one tmux control client); then it reads the
  reply's stats line from the screen: `N tokens · X tok/s · prompt P (C cached) · first token T s`.
- `--stop-test` then starts a new chat (Ctrl+N), pastes a ~6,500-token text (give `--ctx 8192`: in the default
  4,096 the app offers to drop turns instead), presses Enter and Esc one second later, and times
  Esc → the reply's stats line showing `stopped`; then asks one more short question.
- each turn also reports Enter -> the first token on screen (the screen read every 20 ms), beside
  the engine's own first-token time, and the UI thread's CPU in between.
- first, unless `--no-reference`: the same turns through `ChatSession` in a process of its own
  (what `bonsai-tui generate` does for turn 1, continued; same flags, so the same sampling and the
  same prompt lengths at every turn): the engine's speed at the same depth, without the app.
- `--profile N` records turn N with py-spy (`--nonblocking --threads --idle`, raw collapsed stacks) into
  /tmp/app-turnN.txt; `benchmarks/key_echo.py --summary FILE` reads it per thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tmux_app import Tmux, stats_lines, status_line  # noqa: E402

QUESTIONS = [
    "Tell me about bonsai trees and how to care for them.",
    "Which species would you pick for a beginner, and why?",
    "How often should I water it in summer?",
    "And in winter?",
    "Thank you!",
]
# the screen is read this often while waiting for the first token: a faster poll takes CPU (tmux
# renders the pane for each read) that the prefill wants, and resolves nothing the target needs
POLL_FIRST = 0.02
MARK = "echo:"  # typed first (untimed), so the box's line can be told from the reply's text
KEYS = "abcdefghijklmnopqrstuvwxyz"
PER_LINE = int(os.environ.get("PER_LINE", 24))  # timed keys before the box is emptied again (stays on one line at 80 columns)


def box_text(screen: str) -> str:
    """What the message box shows after MARK ("" when MARK is not on screen)."""
    for line in reversed(screen.splitlines()):
        if MARK in line:
            return line.split(MARK, 1)[1].split("│")[0].strip()  # up to the box's border (a panel may follow)
    return ""


def streaming(screen: str) -> bool:
    """The status bar shows a live speed (and no prefill figure) only while a reply streams."""
    status = status_line(screen)
    return "tok/s" in status and "prefill" not in status


def ctx_used(screen: str) -> int | None:
    found = re.search(r"ctx (\d+)", status_line(screen))
    return int(found.group(1)) if found else None


def finished(screen: str, ctx_before: int | None) -> bool:
    """The reply has ended: no live speed, the context grew, and the last stats line adds up to it."""
    found = stats_lines(screen)
    used = ctx_used(screen)
    if streaming(screen) or not found or used is None or used == ctx_before:
        return False
    return int(found[-1].group(3)) + int(found[-1].group(1)) == used


def echo_samples(app: Tmux, interval: float) -> list[float]:
    """Type while the reply streams; seconds from each key to its echo."""
    samples: list[float] = []
    typed = ""
    app.type(MARK)
    app.until(lambda s: MARK in s, timeout=30, poll=0.001)
    while True:
        if not streaming(app.screen()):
            break
        if len(typed) == PER_LINE:
            app.keys("C-u")  # the box empties: untimed
            app.until(lambda s: MARK not in s, timeout=30, poll=0.001)
            app.type(MARK)
            app.until(lambda s: box_text(s) == "" and MARK in s, timeout=30, poll=0.001)
            typed = ""
        key = KEYS[len(typed)]
        expected = typed + key
        sent = time.perf_counter()
        app.type(key)
        _, seen = app.until(lambda s: box_text(s).endswith(expected), timeout=30, poll=0.001)
        typed = expected
        samples.append(seen - sent)
        time.sleep(interval)
    app.keys("C-u")
    # keys sent right after Ctrl+U were lost in the box (seen in tmux): the next question waits
    app.until(lambda s: MARK not in s, timeout=30, poll=0.001)
    return samples


def app_pid(app: Tmux) -> int:
    shell = int(app.command(f"display-message -p -t {app.name} '#{{pane_pid}}'")[0])
    children = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
    return int(children[0]) if children else shell


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of `pid`, by name (the UI thread is named after the app)."""
    tick = os.sysconf("SC_CLK_TCK")
    times: dict[str, float] = collections.Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        kind = "ui" if task.name == str(pid) else "engine+other"
        used = (int(fields[11]) + int(fields[12])) / tick
        times[kind] += used
        times[f"{name}:{task.name}"] += used
    return times


def one_turn(app: Tmux, question: str, turn: int, interval: float, profile: bool, first_only: bool = False) -> dict:
    """`first_only`: the profile ends when the first token shows (Enter -> first token)."""
    ctx_before = ctx_used(app.screen())
    recorder = None
    if profile:
        out = Path(f"/tmp/app-turn{turn}.txt")
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        recorder = subprocess.Popen(
            [py_spy, "record", "--pid", str(app_pid(app)), "--nonblocking", "--threads", "--idle", "-r", "200",
             "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    pid = app_pid(app)
    cpu_before, wall_before = thread_cpu(pid), time.perf_counter()
    app.type(question)
    entered = time.perf_counter()
    app.keys("Enter")
    _, first_seen = app.until(lambda s: streaming(s) or finished(s, ctx_before), poll=POLL_FIRST)
    cpu_first = thread_cpu(pid)
    if recorder is not None and first_only:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        recorder = None
    samples = echo_samples(app, interval) if interval > 0 else []
    screen, _ = app.until(lambda s: finished(s, ctx_before))
    cpu_after, wall = thread_cpu(pid), time.perf_counter() - wall_before
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    last = stats_lines(screen)[-1]
    tokens, tok_s, prompt, cached, ttft, note = last.groups()
    return {
        "turn": turn, "tokens": int(tokens), "tok_s": float(tok_s), "prompt": int(prompt), "cached": int(cached),
        "ttft": float(ttft), "note": note or "", "line": last.group(0), "echo_ms": [1000 * s for s in samples],
        "ui_cpu": cpu_after["ui"] - cpu_before["ui"], "other_cpu": cpu_after["engine+other"] - cpu_before["engine+other"],
        "wall": wall, "felt_first": first_seen - entered, "ui_cpu_first": cpu_first["ui"] - cpu_before["ui"],
        "other_cpu_first": cpu_first["engine+other"] - cpu_before["engine+other"],
        "threads": {k: round(cpu_after[k] - cpu_before.get(k, 0), 2) for k in cpu_after if ":" in k and cpu_after[k] - cpu_before.get(k, 0) > 0.05},
    }


def stop_test(app: Tmux, words: int) -> None:
    """Paste a long text, Enter, Esc one second later: how soon the reply says `stopped`."""
    text = " ".join(f"bonsai{i % 97} leaf{i % 13}" for i in range(words // 2)) + " Summarize this."
    app.keys("C-n")  # a new chat: the earlier turns and 4,000 tokens would not fit the context together
    app.until(lambda s: "is ready" in s, timeout=30)
    time.sleep(0.5)  # keys sent right after a Ctrl key can be lost (see echo_samples)
    app.paste(text)
    app.until(lambda s: "Summarize" in s and "this." in s, timeout=30)  # may wrap between the two words
    lines_before = len(stats_lines(app.screen()))
    app.keys("Enter")
    time.sleep(1.0)
    pressed = time.perf_counter()
    app.keys("Escape")
    # a new stats line, whatever the context shows: a stop before the first prefill slice ended
    # leaves the context as it was
    screen, seen = app.until(lambda s: len(stats_lines(s)) > lines_before and not streaming(s), poll=0.005)
    found = stats_lines(screen)
    print(f"stop: Esc 1 s after Enter → the reply ended {seen - pressed:.2f} s later: {found[-1].group(0) if found else '?'}", flush=True)
    print(f"stop: status bar: {status_line(screen).strip()}", flush=True)
    print("stop: the screen then:\n" + screen, flush=True)
    result = one_turn(app, "Are you still there?", 99, 0, False)
    print(f"after the stop, one more turn: {result['line']}", flush=True)


def summary(path: Path, top: int = 25) -> None:
    """Samples per thread, and the heaviest Python frames of each (self and inclusive)."""
    per_thread: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread, n = frames[0], int(count)
        per_thread[thread] += n
        for frame in set(frames[1:]):
            inclusive[thread][frame] += n
    for thread, total in per_thread.most_common():
        print(f"== {thread}: {total} samples")
        for frame, n in inclusive[thread].most_common(top):
            print(f"  {100 * n / total:5.1f} %  {frame[:150]}")


def reference(model: str, tokens: int, turns: int) -> None:
    """The same turns through ChatSession, no UI: one JSON line of stats per turn."""
    import engine
    from engine.allocator import keep_big_arrays_out_of_the_heap
    from engine.session import ChatSession, DoneEvent

    keep_big_arrays_out_of_the_heap()  # as `bonsai-tui generate` (and the app) run

    with engine.load(model) as loaded:
        params = loaded.default_params().with_changes(temperature=0.8, top_k=40, top_p=0.95, seed=1)
        session = ChatSession(loaded, n_ctx=4096, params=params)
        messages: list[dict[str, str]] = []
        for turn in range(turns):
            messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            asked = time.perf_counter()
            first = None
            for event in session.chat(messages, max_tokens=tokens):
                first = first or time.perf_counter() - asked  # the rendering and tokenizing too
                done = event
            assert isinstance(done, DoneEvent)
            messages.append({"role": "assistant", "content": done.text})
            print(json.dumps(done.stats.as_dict() | {"felt_first": first}), flush=True)


def reference_runs(model: str, tokens: int, turns: int) -> list[dict]:
    command = [sys.executable, __file__, model, "--reference-only", "--tokens", str(tokens), "--turns", str(turns)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?")
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between timed keys (0: no typing)")
    parser.add_argument("--stop-test", action="store_true")
    parser.add_argument("--stop-words", type=int, default=1400, help="words in the pasted text (~6,500 tokens: needs --ctx 8192)")
    parser.add_argument("--ctx", type=int, default=0, help="the app's --ctx (0: its default, 4,096)")
    parser.add_argument("--profile", type=int, default=0, metavar="TURN")
    parser.add_argument("--profile-first-token", action="store_true", help="profile only Enter -> first token")
    parser.add_argument("--no-reference", action="store_true", help="skip the engine-only run of the same turns")
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--summary", type=Path, default=None, help="print a py-spy raw file's profile and exit")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.reference_only:
        reference(args.model, args.tokens, args.turns)
        return
    engine_only: list[dict] = []
    if not args.no_reference:
        engine_only = reference_runs(args.model, args.tokens, args.turns)
        for turn, r in enumerate(engine_only, 1):
            print(f"engine turn {turn}: {r['generated_tokens']} tokens · {r['decode_tok_s']:.1f} tok/s · prompt"
                  f" {r['prompt_tokens']} ({r['cached_tokens']} cached) · first token {r['ttft_s']:.2f} s", flush=True)
    width, height = (int(v) for v in args.size.split("x"))
    cli = str(Path(sys.executable).with_name("bonsai-tui"))
    command = [cli, "--model", args.model, "--max-tokens", str(args.tokens), "--seed", "1",
               "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--ctx", str(args.ctx)]
    home = f"/tmp/bonsai-key-echo-{os.getpid()}"
    env = {"BONSAI_TUI_HOME": home} | {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}  # A/B runs
    app = Tmux(command, width, height, env=env)
    try:
        app.until(lambda s: "is ready" in s, timeout=300)
        for turn in range(1, args.turns + 1):
            r = one_turn(app, QUESTIONS[(turn - 1) % len(QUESTIONS)], turn, args.interval, args.profile == turn,
                         args.profile_first_token)
            echo = r["echo_ms"]
            keys = (f" · key-to-echo {len(echo)} keys: median {statistics.median(echo):.0f} ms, "
                    f"90 % {sorted(echo)[int(0.9 * (len(echo) - 1))]:.0f} ms, worst {max(echo):.0f} ms") if echo else ""
            ratio = ""
            if turn <= len(engine_only):
                e = engine_only[turn - 1]
                ratio = (f" [{100 * r['tok_s'] / e['decode_tok_s']:.0f} % of the engine's decode,"
                         f" first token {r['ttft'] - e['ttft_s']:+.2f} s, on screen {r['felt_first'] - e['felt_first']:+.2f} s]")
            print(f"{args.size} turn {turn}: {r['line']}{ratio}{keys}", flush=True)
            print(f"    Enter -> first token on screen {r['felt_first']:.2f} s (UI thread CPU {r['ui_cpu_first']:.2f} s,"
                  f" engine and the rest {r['other_cpu_first']:.2f} s)", flush=True)
            print(f"    CPU over the turn's {r['wall']:.1f} s: UI thread {r['ui_cpu']:.2f} s, engine and the rest {r['other_cpu']:.2f} s", flush=True)
            if os.environ.get("BENCH_THREADS"):
                print(f"    per thread: {r['threads']}", flush=True)
        if args.stop_test:
            stop_test(app, args.stop_words)
    finally:
        app.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
