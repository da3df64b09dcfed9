"""`bonsai-tui generate` and `bonsai-tui synth` from the command line (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import engine
from engine import simd
from engine.cpu import requested_cap
from engine.matrix import kernel_names
from engine.sampling import SamplingParams
from engine.session import ChatSession


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bonsai_tui.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_generate_json_matches_the_engine_api(tiny_model_path: Path, tiny_model: engine.Model) -> None:
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "hello", "--system", "be brief",
                 "--max-tokens", "6", "--temperature", "0", "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    done = list(ChatSession(tiny_model, params=SamplingParams(temperature=0)).chat(messages, 6))[-1]
    assert out["prompt_tokens"] == done.prompt_ids and out["tokens"] == done.token_ids
    assert out["text"] == done.text and out["stop_reason"] == "max_tokens"
    assert out["stats"]["generated_tokens"] == 6 and out["stats"]["prompt_tokens"] == len(done.prompt_ids)
    assert {"prefill_tok_s", "decode_tok_s", "ttft_s"} <= set(out["stats"])


def test_generate_raw_streams_text_and_reports_speed(tiny_model_path: Path, tiny_model: engine.Model) -> None:
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "hello", "--raw",
                 "--max-tokens", "4", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    done = list(ChatSession(tiny_model, params=SamplingParams(temperature=0)).generate(tiny_model.tokenize("hello"), 4))[-1]
    assert result.stdout == done.text + "\n"
    assert "[max_tokens: 4 tokens, prefill" in result.stderr and "tok/s" in result.stderr


def test_invalid_sampling_value_is_one_line(tiny_model_path: Path) -> None:
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "x", "--top-p", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "bonsai-tui generate: top_p must be in (0, 1] (got 0.0)"


def test_synth_writes_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "s.gguf"
    result = cli("synth", str(out), "--preset", "tiny", "--seed", "3")
    assert result.returncode == 0 and f"wrote {out}" in result.stdout
    model = engine.load(out)
    assert model.config.architecture == "qwen3" and model.tokenizer.eos_id == model.tokenizer.token_id("<|im_end|>")


def test_synth_can_pad_to_an_exact_size(tmp_path: Path) -> None:
    from engine.synth import write_model

    path = write_model(tmp_path / "p.gguf", "tiny", target_bytes=400_000)
    assert path.stat().st_size == 400_000 and engine.load(path).config.n_layers == 2


def test_bench_json_reports_every_figure(tiny_model_path: Path) -> None:
    result = cli("bench", "--model", str(tiny_model_path), "-p", "30", "-n", "4", "--runs", "2", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"pp_tok_s", "tg_tok_s", "load_s", "ttft_s", "peak_rss_mb", "threads", "bandwidth_gb_s"} <= set(out)
    assert out["threads"] == 1 and out["pp_tokens"] == 30 and out["tg_tokens"] == 4
    assert out["ttft_prompt_tokens"] <= 32 and out["model_bytes"] == tiny_model_path.stat().st_size
    assert all(out[k] > 0 for k in ("pp_tok_s", "tg_tok_s", "load_s", "ttft_s", "peak_rss_mb", "bandwidth_gb_s"))
    decode, prefill = (f"{name} (Q1_0)" for name in kernel_names(simd.AVAILABLE).values())
    assert (out["decode"], out["prefill"], out["cpu"]) == (decode, prefill, requested_cap())


def test_bench_depth_measures_after_that_much_context(tiny_model_path: Path, tiny_model: engine.Model) -> None:
    result = cli("bench", "--model", str(tiny_model_path), "-p", "8", "-n", "3", "--runs", "1", "--threads", "1",
                 "--depth", "300", "--ctx", "16", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["depth"] == 300 and out["pp_tokens"] == 8 and out["tg_tokens"] == 3
    c = tiny_model.config  # the context was raised to depth + 8 positions of fp16 K and V
    assert out["kv_cache_mb"] * 2**20 == 2 * c.n_layers * 308 * c.n_head_kv * c.head_dim * 2
    bad = cli("bench", "--model", str(tiny_model_path), "--depth", "-5")
    assert bad.returncode == 2 and bad.stderr.splitlines()[-1].endswith(
        "argument -d/--depth: expected a token count of 0 or more, got '-5'"
    )


def test_bench_exact_decodes_in_float32(tiny_model_path: Path) -> None:
    result = cli("bench", "--model", str(tiny_model_path), "-p", "8", "-n", "2", "--runs", "1", "--exact")
    assert result.returncode == 0, result.stderr
    assert "decode  float32 lookup table (Q1_0)" in result.stdout


def test_generate_closes_its_model_and_its_store(
    tiny_model_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from bonsai_tui import cli as cli_module
    from bonsai_tui.commands import documents, generate
    from bonsai_tui.store import Store

    opened: list = []

    class RecordedStore(Store):
        def close(self) -> None:
            opened.append(self)
            super().close()

    real_load = engine.load
    models: list[engine.Model] = []
    monkeypatch.setattr(documents, "Store", RecordedStore)
    monkeypatch.setattr(generate.engine, "load", lambda *a, **k: models.append(real_load(*a, **k)) or models[-1])
    (tmp_path / "notes.md").write_text("# Leave\nTwenty days of leave a year.\n", encoding="utf-8")
    argv = ["generate", "--model", str(tiny_model_path), "--prompt", "How many days of leave?", "--max-tokens", "1",
            "--json", "--docs", str(tmp_path / "notes.md")]
    assert cli_module.main(argv) == 0, capsys.readouterr().err
    assert len(opened) == 1 and [model.closed for model in models] == [True]


def test_synth_creates_missing_folders_and_says_why_it_cannot_write(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "s.gguf"
    result = cli("synth", str(out))
    assert (result.returncode, result.stderr) == (0, "") and out.is_file()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = cli("synth", str(blocked / "s.gguf"))
    assert result.returncode == 2
    assert result.stderr == f"bonsai-tui synth: cannot write {blocked / 's.gguf'}: {blocked} is a file, not a folder\n"
