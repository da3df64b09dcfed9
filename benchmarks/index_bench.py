"""How long documents take to index: a synthetic folder of Markdown files (10,000 files, 100 MB by
default), indexed into a fresh history database, then checked again unchanged, then searched.

    .venv/bin/python benchmarks/index_bench.py --write /tmp/docs-corpus [--files 10000] [--mb 100]
    flock /tmp/bench.lock .venv/bin/python benchmarks/index_bench.py --corpus /tmp/docs-corpus

(the corpus is written once, outside the timing and the lock).

The text is random words from a 5,000-word vocabulary in Zipf-like frequencies, in paragraphs under
Markdown headings, so the FTS5 index has realistic postings. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bonsai_tui.documents.index import DocumentIndex
from bonsai_tui.documents.retrieve import fts_query, query_terms
from bonsai_tui.store import Store


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


def write_corpus(root: Path, files: int, total_bytes: int, seed: int = 0) -> tuple[int, list[str]]:
    """Writes the corpus; returns its size in bytes and its vocabulary, most frequent first."""
    rng = random.Random(seed)
    words = vocabulary(5000, rng)
    rng.shuffle(words)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    per_file = total_bytes // files
    written = 0
    for number in range(files):
        folder = root / f"part{number // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        lines: list[str] = [f"# Document {number}", ""]
        size = 0
        while size < per_file:
            if rng.random() < 0.15:
                lines += [f"## {' '.join(rng.choices(words, weights, k=3)).capitalize()}", ""]
            sentence_words = rng.choices(words, weights, k=rng.randint(40, 90))
            paragraph = " ".join(sentence_words)
            # wrapped at ~80 columns, as prose files are
            lines += [paragraph[i : i + 80] for i in range(0, len(paragraph), 80)] + [""]
            size += len(paragraph) + 4
        text = "\n".join(lines)
        (folder / f"doc{number:05d}.md").write_text(text)
        written += len(text.encode())
    return written, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="DIR", help="write the corpus into DIR and stop")
    parser.add_argument("--corpus", type=Path, metavar="DIR", help="measure indexing DIR (written by --write)")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=float, default=100)
    args = parser.parse_args()
    if args.write:
        written, words = write_corpus(args.write, args.files, int(args.mb * 1e6))
        (args.write / ".vocabulary").write_text("\n".join(words))  # hidden files are not indexed
        print(json.dumps({"files": args.files, "text_mb": round(written / 1e6, 1)}))
        return
    if not args.corpus:
        parser.error("give --write DIR (once) or --corpus DIR")
    words = (args.corpus / ".vocabulary").read_text().split("\n")
    written = sum(p.stat().st_size for p in args.corpus.rglob("*.md"))
    with tempfile.TemporaryDirectory() as temp:
        with Store(Path(temp) / "history.sqlite3") as store:
            index = DocumentIndex(store)
            started, cpu_started = time.perf_counter(), time.process_time()
            report = index.index([args.corpus])
            first, first_cpu = time.perf_counter() - started, time.process_time() - cpu_started
            started = time.perf_counter()
            again = index.index([args.corpus])
            unchanged = time.perf_counter() - started
            changed = next(args.corpus.glob("part00/doc00000.md"))
            original = changed.read_text()
            changed.write_text(original + "\n\nOne more paragraph.\n")
            started = time.perf_counter()
            after_change = index.index([args.corpus])
            one_changed = time.perf_counter() - started
            changed.write_text(original)
            searches = {}
            for name, ranks in (("common", slice(100, 103)), ("rare", slice(3000, 3003))):
                query = fts_query(query_terms(" ".join(words[ranks])))  # three words of that frequency rank
                started = time.perf_counter()
                hits = index.search(query, report.document_ids, 50)
                searches[name] = round((time.perf_counter() - started) * 1000, 1)
        database_mb = sum(p.stat().st_size for p in Path(temp).glob("history.sqlite3*")) / 1e6
    print(json.dumps({
        "files": report.files,
        "text_mb": round(written / 1e6, 1),
        "passages": report.passages,
        "index_s": round(first, 1),
        "index_cpu_s": round(first_cpu, 1),  # this process only: the machine may be shared
        "index_mb_per_s": round(written / 1e6 / first, 2),
        "recheck_unchanged_s": round(unchanged, 2),
        "reindexed_on_recheck": again.reindexed,
        "recheck_one_changed_s": round(one_changed, 2),
        "reindexed_after_change": after_change.reindexed,
        "search_ms_common_words": searches["common"],
        "search_ms_rare_words": searches["rare"],
        "database_mb": round(database_mb, 1),
    }))


if __name__ == "__main__":
    main()
