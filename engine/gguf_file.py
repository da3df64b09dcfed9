"""Open and validate a GGUF file: metadata into a dict, tensors as views into one read-only mmap.

We parse the header ourselves (the format is short: see ggml's docs/gguf.md) because the gguf
package's reader takes ~7 s on Bonsai's 150k-token vocabulary; this one takes a fraction of that.
Nothing here copies tensor data: a tensor is a numpy view into the mapped file.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGML tensor types the engine runs: name, weights per block, bytes per block
GGML_F32, GGML_F16, GGML_Q1_0, GGML_Q2_0 = 0, 1, 41, 42
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    GGML_F32: ("F32", 1, 4),
    GGML_F16: ("F16", 1, 2),
    GGML_Q1_0: ("Q1_0", 128, 18),
    GGML_Q2_0: ("Q2_0", 128, 34),  # PrismML's layout; see Q2_LAYOUTS
}
# Q2_0 has two layouts under one type id (PrismML's, and mainline llama.cpp's "g64"): a file's
# layout is read from the room its tensors take (GGUFFile.q2_layout)
Q2_LAYOUTS = {"g128": (128, 34), "g64": (64, 18)}

# GGUF metadata value types -> struct format (strings = 8, arrays = 9 handled apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order: rows first (GGUF stores the fastest dimension first)
    ggml_type: int
    offset: int  # absolute offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return TENSOR_TYPES.get(self.ggml_type, (f"type {self.ggml_type}",))[0]


_LENGTH = struct.Struct("<Q")


class _Cursor:
    """Reads little-endian values from the mapped header, raising on a short file."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> int:
        start = self.pos
        if start + n > len(self.buf):
            raise ModelFileError(self.path, "the file is truncated (header ends early)")
        self.pos += n
        return start

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        return struct.unpack_from("<" + fmt, self.buf, self.take(size))[0]

    def string(self) -> str:
        n = self.scalar("Q")
        start = self.take(n)
        return self.buf[start : start + n].decode("utf-8", errors="replace")

    def strings(self, count: int) -> list[str]:
        """An array of strings: the vocabulary and merges, ~300k of them, so one tight loop."""
        buf, pos, end = self.buf, self.pos, len(self.buf)
        read_length = _LENGTH.unpack_from
        out = []
        for _ in range(count):
            if pos + 8 > end:
                break
            (n,) = read_length(buf, pos)
            pos += 8
            out.append(buf[pos : pos + n].decode("utf-8", errors="replace"))
            pos += n
        if pos > end or len(out) < count:
            raise ModelFileError(self.path, "the file is truncated (header ends early)")
        self.pos = pos
        return out

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.scalar("I"), self.scalar("Q")
            if etype == _STRING:
                return self.strings(count)
            if etype in _NUMPY:
                dtype = np.dtype(_NUMPY[etype]).newbyteorder("<")
                start = self.take(count * dtype.itemsize)
                return np.frombuffer(self.buf, dtype=dtype, count=count, offset=start).tolist()
            return [self.value(etype) for _ in range(count)]
        raise ModelFileError(self.path, f"unknown metadata value type {vtype} (corrupt file?)")


class GGUFFile:
    """A GGUF file mapped read-only. `metadata` is a plain dict; `tensor(name)` returns a view."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                self.file_size = self.path.stat().st_size
                if self.file_size < 24:
                    raise ModelFileError(self.path, "not a GGUF file (too small)")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise ModelFileError(self.path, "no such file") from None
        except IsADirectoryError:
            raise ModelFileError(self.path, "is a directory, not a GGUF file") from None
        except PermissionError:
            raise ModelFileError(self.path, "permission denied") from None
        self.metadata: dict[str, Any] = {}
        self.tensors: dict[str, TensorInfo] = {}
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _parse(self) -> None:
        cur = _Cursor(self._map, self.path)
        if self._map[:4] != GGUF_MAGIC:
            raise ModelFileError(self.path, "not a GGUF file (bad magic bytes)")
        cur.take(4)
        version = cur.scalar("I")
        if version not in (2, 3):
            raise ModelFileError(self.path, f"unsupported GGUF version {version}")
        n_tensors, n_kv = cur.scalar("Q"), cur.scalar("Q")
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise ModelFileError(self.path, "corrupt GGUF header (absurd counts)")
        for _ in range(n_kv):
            key = cur.string()
            self.metadata[key] = cur.value(cur.scalar("I"))
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.scalar("I")
            if n_dims > 4:
                raise ModelFileError(self.path, f"tensor {name} has {n_dims} dimensions (corrupt file?)")
            dims = [cur.scalar("Q") for _ in range(n_dims)]
            infos.append((name, tuple(reversed(dims)), cur.scalar("I"), cur.scalar("Q")))
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        data_start = -(-cur.pos // alignment) * alignment
        self._drop_pages(0, cur.pos)  # parsed: the vocabulary's ~8 MB of strings need not stay resident
        self.q2_layout = self._q2_layout(infos, data_start, alignment)
        for name, shape, ggml_type, offset in infos:
            self.tensors[name] = self._tensor_info(name, shape, ggml_type, data_start + offset)

    def _tensor_info(self, name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> TensorInfo:
        if ggml_type not in TENSOR_TYPES:
            raise ModelFileError(
                self.path, f"tensor {name} has unsupported type {ggml_type} (supported: F32, F16, Q1_0, Q2_0)"
            )
        _, block, block_bytes = TENSOR_TYPES[ggml_type]
        if ggml_type == GGML_Q2_0:
            block, block_bytes = Q2_LAYOUTS[self.q2_layout]
        if shape[-1] % block:
            raise ModelFileError(self.path, f"tensor {name} row length {shape[-1]} is not a multiple of {block}")
        nbytes = int(np.prod(shape, dtype=np.int64)) // block * block_bytes
        if offset + nbytes > self.file_size:
            raise ModelFileError(
                self.path,
                f"the file is truncated: tensor {name} needs bytes up to {offset + nbytes:,} "
                f"but the file has {self.file_size:,} (an interrupted download?)",
            )
        return TensorInfo(name, shape, ggml_type, offset, nbytes)

    def _q2_layout(self, infos: list, data_start: int, alignment: int) -> str | None:
        """"g128" or "g64" if the file has Q2_0 tensors, from the bytes between each one's offset and
        the next tensor's (the writer pads each tensor to the alignment; the last one ends the file).
        A tensor whose room fits neither layout, or tensors that disagree, make the file refused;
        the last tensor only counts if it fits, so a truncated file is reported as truncated."""
        starts = sorted(offset for *_, offset in infos)
        following = dict(zip(starts, starts[1:]))
        votes: set[str] = set()
        for name, shape, ggml_type, offset in infos:
            if ggml_type != GGML_Q2_0 or not shape:
                continue
            is_last = offset not in following
            room = (self.file_size - data_start if is_last else following[offset]) - offset
            n = int(np.prod(shape, dtype=np.int64))
            sizes = {layout: n // block * nbytes for layout, (block, nbytes) in Q2_LAYOUTS.items() if shape[-1] % block == 0}
            fits = {layout for layout, size in sizes.items() if size <= room < size + alignment}
            if len(fits) == 1:
                votes |= fits
            elif not fits and not is_last:  # (both fit: a tiny tensor, padding hides the difference)
                expected = " or ".join(f"{size:,} ({layout})" for layout, size in sizes.items())
                raise ModelFileError(
                    self.path, f"Q2_0 tensor {name} takes {room:,} bytes, which fits neither Q2_0 layout (expected {expected})"
                )
        if len(votes) > 1:
            raise ModelFileError(self.path, "its Q2_0 tensors mix the 128- and 64-weight layouts")
        if not votes and any(info[2] == GGML_Q2_0 for info in infos):
            raise ModelFileError(self.path, "its Q2_0 tensors fit neither Q2_0 layout (a truncated or damaged file?)")
        return votes.pop() if votes else None

    def close(self) -> None:
        """Unmap the file (metadata and tensor infos stay readable; tensor() does not)."""
        self._map.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def release(self, name: str) -> None:
        """Tell the kernel we are done with a tensor's pages (after copying it): they leave this
        process's resident memory and come back from the page cache if read again."""
        info = self.tensors[name]
        self._drop_pages(info.offset, info.offset + info.nbytes)

    def _drop_pages(self, start: int, stop: int) -> None:
        start -= start % mmap.PAGESIZE
        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)

    def tensor(self, name: str) -> np.ndarray:
        """F32/F16 tensors in their shape; Q1_0 and Q2_0 as uint8 rows of blocks."""
        info = self.tensors[name]
        if info.ggml_type in (GGML_Q1_0, GGML_Q2_0):
            rows = int(np.prod(info.shape[:-1], dtype=np.int64))
            flat = np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=info.offset)
            return flat.reshape(rows, info.nbytes // rows)
        dtype = np.float32 if info.ggml_type == GGML_F32 else np.float16
        count = int(np.prod(info.shape, dtype=np.int64))
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=info.offset).reshape(info.shape)
