"""A local stand-in for the Hugging Face hub, enough for huggingface_hub's file downloads.

It answers HEAD/GET /{org}/{repo}/resolve/{revision}/{filename} with the headers huggingface_hub
reads (X-Repo-Commit, ETag = the file's sha256 as for LFS files, sizes), honours Range requests,
and can misbehave on demand (see Behaviour): cut a transfer, stall it until released, serve corrupt
bytes, ignore Range, answer 404 / 401 / 5xx. `stop()` is the hub going down.
Run it by hand for a manual try (serves a synthetic model as Bonsai 1.7B):
    python tests/fakehub.py [--model FILE.gguf | --preset tiny|bonsai-1.7b] [--port 8765] [--throttle 0.01]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROUTE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
TREE_ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/]+)$")  # the file list


@dataclass
class Behaviour:
    cut_after: int | None = None  # close the connection after this many bytes, once
    corrupt: bool = False  # serve flipped bytes under the right checksum
    status: int | None = None  # answer every request with this error status
    ignore_range: bool = False  # answer ranged requests with the whole file (as some CDNs do)
    throttle_s: float = 0.0  # pause per 64 KiB chunk, to watch progress
    hold_at: int | None = None  # stop sending after this many bytes until `release` is set
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up mid-transfer on purpose (cancel, cut); no tracebacks for that


class FakeHub:
    def __init__(self, files: dict[str, bytes], port: int = 0) -> None:
        """files: {"org/repo/filename": content}; port 0 picks a free one."""
        self.files = files
        self.behaviour = Behaviour()
        self.server = QuietServer(("127.0.0.1", port), self._handler())
        # a short poll interval: stopping the server (after every test) takes that long
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sha256(self, key: str) -> str:
        return hashlib.sha256(self.files[key]).hexdigest()

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                b = hub.behaviour
                b.requests.append((self.command, self.path, self.headers.get("Range")))
                tree = TREE_ROUTE.match(self.path.split("?")[0])
                if tree and b.status is None:
                    return self._file_list(tree["repo"])
                match = ROUTE.match(self.path.split("?")[0])
                key = f"{match['repo']}/{match['filename']}" if match else None
                if b.status is not None:
                    return self._error(b.status, {401: "GatedRepo", 404: "RepoNotFound"}.get(b.status))
                if key not in hub.files:
                    repo_known = match and any(k.startswith(match["repo"] + "/") for k in hub.files)
                    return self._error(404, "EntryNotFound" if repo_known else "RepoNotFound")
                data = hub.files[key]
                sha = hub.sha256(key)
                if b.corrupt:
                    data = bytes(x ^ 0xFF for x in data)
                start = 0 if b.ignore_range else self._range_start()
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self._send(data[start:])

            def _file_list(self, repo: str) -> None:
                """The repo's files as the hub's tree API lists them (every file an LFS one)."""
                files = {key.removeprefix(repo + "/"): data for key, data in hub.files.items() if key.startswith(repo + "/")}
                if not files:
                    return self._error(404, "RepoNotFound")
                listing = [
                    {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name,
                     "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
                    for name, data in files.items()
                ]
                payload = json.dumps(listing).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _range_start(self) -> int:
                found = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                return int(found[1]) if found else 0

            def _send(self, payload: bytes) -> None:
                b = hub.behaviour
                limit = b.cut_after
                sent = 0
                for at in range(0, len(payload), 1 << 16):
                    chunk = payload[at : at + (1 << 16)]
                    if b.hold_at is not None and sent >= b.hold_at:
                        b.release.wait(timeout=60)
                    if limit is not None and sent + len(chunk) > limit:
                        self.wfile.write(chunk[: limit - sent])
                        self.wfile.flush()
                        b.cut_after = None  # only once
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if b.throttle_s:
                        threading.Event().wait(b.throttle_s)

            def _error(self, status: int, code: str | None) -> None:
                message = b'{"error": "fake hub error"}'
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", "fake hub error")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(message)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="a fake Hugging Face hub serving one model as Bonsai 1.7B")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="a GGUF file to serve")
    source.add_argument("--preset", default="tiny", help="else write a synthetic model (tiny, bonsai-1.7b)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--throttle", type=float, default=0.0, help="seconds to pause per 64 KiB sent")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from engine.synth import write_model

        model = write_model(Path(tempfile.mkdtemp()) / f"{args.preset}.gguf", preset=args.preset, seed=0)
    hub = FakeHub({"prism-ml/Bonsai-1.7B-gguf/Bonsai-1.7B-Q1_0.gguf": model.read_bytes()}, args.port)
    hub.behaviour.throttle_s = args.throttle
    print(f"fake hub on {hub.url} serving {model} ({model.stat().st_size:,} bytes) as prism-ml/Bonsai-1.7B-gguf",
          flush=True)
    hub.server.serve_forever()


if __name__ == "__main__":
    main()
