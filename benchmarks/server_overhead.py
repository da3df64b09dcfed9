"""The server's own cost per token, in one process: the same greedy chat turn through a ChatSession
on the main thread, on another thread, then through `bonsai-tui serve`'s app (JSON, then SSE).

    flock /tmp/bench.lock python benchmarks/server_overhead.py ~/.cache/bonsai-tui/bonsai-1.7b-synthetic.gguf 32

Prints (decode tok/s, first-token s) for the sessions, and (timings.predicted_per_second,
prompt s, request wall s) for the server. The first line includes loading the kernels.
"""

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx  # noqa: E402
from serverutil import running_server  # noqa: E402

import engine  # noqa: E402
from bonsai_tui.server.app import ServerOptions  # noqa: E402
from engine.sampling import SamplingParams  # noqa: E402

path, n = sys.argv[1], int(sys.argv[2])
model = engine.load(path)
messages = [{"role": "user", "content": "Rivers 7: tell me three short facts about them, in plain words, one line each."}]


def direct() -> tuple[float, float]:
    session = engine.ChatSession(model, n_ctx=1024, params=SamplingParams(temperature=0))
    done = list(session.chat(messages, n))[-1]
    return round(done.stats.decode_tok_s, 1), round(done.stats.ttft_s, 2)


print("main thread", direct(), flush=True)
out: dict = {}
thread = threading.Thread(target=lambda: out.update(r=direct()))
thread.start()
thread.join()
print("other thread", out["r"], flush=True)
with running_server(ServerOptions(load=lambda: model, model_id="m", n_ctx=1024)) as url:
    for stream in (False, True):
        body = {"messages": messages, "max_tokens": n, "temperature": 0, "stream": stream}
        started = time.perf_counter()
        if stream:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: {")]
            timings = json.loads(lines[-1][6:])["timings"]
        else:
            timings = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()["timings"]
        print("server stream" if stream else "server json", round(timings["predicted_per_second"], 1),
              round(timings["prompt_ms"] / 1000, 2), round(time.perf_counter() - started, 1), flush=True)
print("main thread again", direct(), flush=True)
