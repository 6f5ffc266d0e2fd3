"""Streaming reads of one array inside an .npz (ADM-style sample files), without loading the whole array."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["StreamingNpzArrayReader", "CORRUPT_ZIP_ERRORS"]

# what zipfile / zlib raise on a damaged member (CRC mismatch, bad deflate data, a cut-off stream)
CORRUPT_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


class StreamingNpzArrayReader:
    """Reads row blocks of one array inside an .npz (default `arr_0`) without loading the whole array.

    Parses the .npy header of the zip member, then `read_batch(n)` reads exactly n rows into a fresh array
    (stored or deflated members both stream). `bytes_read`, `read_calls` and `max_read_bytes` count the I/O.
    """

    def __init__(self, path: str | Path, key: str = "arr_0"):
        self.path, self.key = Path(path), key
        if not self.path.is_file():
            raise FileNotFoundError(f"npz file {self.path} does not exist")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise ValueError(f"{self.path} is not an .npz (zip) file") from None
        names = self._zip.namelist()
        if f"{key}.npy" not in names:
            self._zip.close()
            keys = ", ".join(n[:-4] for n in names if n.endswith(".npy")) or "(none)"
            raise ValueError(f"{self.path} has no array {key!r} (arrays: {keys}); ADM-style sample files store "
                             "images as arr_0")
        try:
            self._f = self._zip.open(f"{key}.npy")
            version = np.lib.format.read_magic(self._f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(self._f)
        except CORRUPT_ZIP_ERRORS + (ValueError,) as e:
            self.close()
            raise self._corrupt(e) from None
        if fortran:
            self.close()
            raise ValueError(f"{self.path}:{key} is stored in Fortran order; save it C-contiguous (np.ascontiguousarray)")
        if dtype.hasobject:
            self.close()
            raise ValueError(f"{self.path}:{key} holds Python objects, not images")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64)))
        self.rows_read = self.bytes_read = self.read_calls = self.max_read_bytes = 0

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def read_batch(self, n: int) -> np.ndarray | None:
        """The next min(n, remaining) rows, or None at the end."""
        n = min(int(n), len(self) - self.rows_read)
        if n <= 0:
            return None
        out = np.empty((n, *self.shape[1:]), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        want, got = n * self.row_bytes, 0
        while got < want:
            try:
                k = self._f.readinto(view[got:])
            except CORRUPT_ZIP_ERRORS as e:
                raise self._corrupt(e) from None
            self.read_calls += 1
            self.max_read_bytes = max(self.max_read_bytes, want - got)
            if not k:
                raise ValueError(f"{self.path}:{self.key} is truncated: expected {len(self)} rows, "
                                 f"got {self.rows_read + got // self.row_bytes}")
            got += k
        self.rows_read += n
        self.bytes_read += want
        return out

    def _corrupt(self, e: Exception) -> ValueError:
        return ValueError(f"{self.path} is damaged: reading {self.key!r} failed ({' '.join(str(e).split())}); "
                          "re-create or re-download the file")

    def close(self) -> None:
        for obj in (getattr(self, "_f", None), getattr(self, "_zip", None)):
            if obj is not None:
                obj.close()

    def __enter__(self) -> "StreamingNpzArrayReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
