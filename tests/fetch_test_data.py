"""Fetch the real Qwen2 vocabulary test files from llama.cpp (inside the llama-cpp-python sdist on PyPI).

ggml-vocab-qwen2.gguf holds Qwen2's tokens and merges; .inp/.out are llama.cpp's test strings and the
ids the reference tokenizer gives them. Only PyPI is reachable from our machines, hence the sdist.
Usage: python tests/fetch_test_data.py [DEST]
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TEST_DATA  # noqa: E402

SDIST = "llama-cpp-python==0.3.36"
FILES = ("ggml-vocab-qwen2.gguf", "ggml-vocab-qwen2.gguf.inp", "ggml-vocab-qwen2.gguf.out")


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else TEST_DATA
    if all((dest / name).exists() for name in FILES):
        print(f"test data already in {dest}")
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", tmp, SDIST],
            check=True,
        )
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in FILES and "vendor/llama.cpp/models" in member.name:
                    (dest / name).write_bytes(tar.extractfile(member).read())
    missing = [name for name in FILES if not (dest / name).exists()]
    if missing:
        print(f"not found in the sdist: {missing}", file=sys.stderr)
        return 1
    print(f"test data written to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
