"""Image inputs: folders, streamed ADM-style .npz, uint8 arrays (NCHW/NHWC), datasets and iterables."""
from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from bench.inputs import (ArraySource, FolderSource, IterableSource, NpzSource, StreamingNpzArrayReader,
                          iter_batches, open_images)


def _imgs(n=5, h=6, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)   # NHWC


def _all(source, batch_size=2) -> torch.Tensor:
    return torch.cat(list(source.batches(batch_size)))


# ---- folders ------------------------------------------------------------------------------------------------

def _write(folder, arrays, ext="png", mode=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        im = Image.fromarray(a)
        (im.convert(mode) if mode else im).save(folder / f"img{i:02d}.{ext}")
    return folder


def test_folder_reads_pngs_in_sorted_order_as_uint8_nchw(tmp_path):
    arrs = _imgs(5)
    src = open_images(_write(tmp_path / "d", arrs))
    assert isinstance(src, FolderSource) and len(src) == 5
    got = _all(src, 2)
    assert got.dtype == torch.uint8 and got.shape == (5, 3, 6, 7)
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), arrs)
    d = src.describe()
    assert d["image_size"] == [6, 7] and d["conversions"] == {} and d["num_images"] == 5


def test_folder_non_image_file_is_an_error_naming_it(tmp_path):
    folder = _write(tmp_path / "d", _imgs(2))
    (folder / "notes.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\0")                        # hidden files are skipped
    with pytest.raises(ValueError, match=r"non-image file\(s\) \(notes.txt\)"):
        FolderSource(folder)
    (folder / "notes.txt").unlink()
    assert FolderSource(folder).describe()["skipped_hidden_files"] == 1
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        FolderSource(folder)


def test_folder_mixed_sizes_error_names_two_sizes_unless_resized(tmp_path):
    folder = _write(tmp_path / "d", _imgs(2, 6, 7))
    Image.fromarray(_imgs(1, 9, 4, seed=1)[0]).save(folder / "z.png")
    with pytest.raises(ValueError, match=r"different sizes: .* is 7x6 but z.png is 4x9"):
        FolderSource(folder)
    src = FolderSource(folder, size=8)
    got = _all(src)
    assert got.shape == (3, 3, 8, 8)
    d = src.describe()
    assert d["resize"].startswith("PIL bicubic") and d["resized_images"] == 3 and d["image_size"] == [8, 8]
    ref = np.asarray(Image.open(folder / "z.png").resize((8, 8), Image.BICUBIC))
    np.testing.assert_array_equal(got[2].permute(1, 2, 0).numpy(), ref)


def test_folder_grayscale_and_rgba_are_converted_and_recorded(tmp_path):
    arrs = _imgs(2)
    folder = _write(tmp_path / "d", arrs[:1], mode="L")
    rgba = np.concatenate([arrs[1], np.full((6, 7, 1), 17, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(arrs[0]).save(folder / "x.jpg", quality=95)
    src = FolderSource(folder)
    got = _all(src)
    assert src.describe()["conversions"] == {"L->RGB": 1, "RGBA->RGB (alpha dropped)": 1}
    gray = np.asarray(Image.fromarray(arrs[0]).convert("L"))
    np.testing.assert_array_equal(got[0].numpy(), np.stack([gray] * 3))     # img00 (gray) sorts first
    np.testing.assert_array_equal(got[1].permute(1, 2, 0).numpy(), arrs[1])  # rgba.png: alpha dropped
    assert got.shape == (3, 3, 6, 7)                                         # jpg read too


def test_folder_errors_and_fingerprint(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="contains no"):
        FolderSource(tmp_path / "empty")
    folder = _write(tmp_path / "d", _imgs(3))
    f1 = FolderSource(folder).fingerprint()
    assert f1 == FolderSource(folder).fingerprint()
    _write(tmp_path / "d", _imgs(1, seed=5))                                  # overwrite img00
    assert FolderSource(folder).fingerprint() != f1
    assert FolderSource(folder, size=4).fingerprint() != FolderSource(folder).fingerprint()


def _bomb_png(path, w=20000, h=20000):
    """A 1x1 PNG whose header claims w x h pixels (IHDR rewritten, its CRC fixed): decoding it would need GBs."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize("w, h", [(20000, 20000), (10000, 10000)])   # over PIL's hard limit, between 1x and 2x
def test_folder_refuses_a_decompression_bomb_before_decoding(tmp_path, w, h):
    d = _write(tmp_path / "d", _imgs(2))
    _bomb_png(d / "zz-bomb.png", w, h)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as e:
            open_images(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert "zz-bomb.png" in msg and "refused before decoding" in msg and "MAX_IMAGE_PIXELS" in msg
    assert "\n" not in msg and peak < 50 * 2**20                           # nothing was decoded


def test_folder_refuses_bombs_under_a_lower_limit_and_decoding_errors_name_the_file(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    d = _write(tmp_path / "d", _imgs(2, 64, 64))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)                 # 64x64 > 1000 < 2x: PIL only warns
    with pytest.raises(ValueError, match=r"img00\.png was refused before decoding"):
        open_images(d)
    monkeypatch.undo()
    src = open_images(d)
    (d / "img01.png").write_bytes((d / "img01.png").read_bytes()[:60])     # truncated after the header check
    with pytest.raises(ValueError, match=r"cannot decode image .*img01\.png"):
        _all(src)


# ---- .npz (ADM format), streamed ----------------------------------------------------------------------------

def test_npz_stream_equals_np_load(tmp_path):
    arr = _imgs(11, 5, 4, seed=2)
    np.savez(tmp_path / "s.npz", arr_0=arr, labels=np.arange(11))
    src = open_images(tmp_path / "s.npz")
    assert isinstance(src, NpzSource) and len(src) == 11
    for bs in (1, 4, 11, 64):
        np.testing.assert_array_equal(_all(src, bs).permute(0, 2, 3, 1).numpy(), np.load(tmp_path / "s.npz")["arr_0"])
    np.savez_compressed(tmp_path / "c.npz", arr_0=arr)                       # deflated members stream too
    np.testing.assert_array_equal(_all(open_images(tmp_path / "c.npz"), 3).permute(0, 2, 3, 1).numpy(), arr)
    np.save(tmp_path / "p.npy", arr)
    np.testing.assert_array_equal(_all(open_images(tmp_path / "p.npy"), 3).permute(0, 2, 3, 1).numpy(), arr)


def test_npz_reader_never_loads_the_whole_array(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, size=(64, 64, 64, 3), dtype=np.uint8)   # 786 kB
    np.savez(tmp_path / "big.npz", arr_0=arr)
    row = 64 * 64 * 3
    with StreamingNpzArrayReader(tmp_path / "big.npz") as r:
        assert r.shape == arr.shape and r.dtype == np.uint8 and r.row_bytes == row
        tracemalloc.start()
        total = 0
        while (block := r.read_batch(4)) is not None:
            total += len(block)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert total == 64 and r.rows_read == 64 and r.bytes_read == arr.nbytes
        assert r.max_read_bytes <= 4 * row and r.read_calls >= 16             # 16 blocks of 4 rows at most
    assert peak < arr.nbytes / 4, f"peak {peak} bytes while streaming a {arr.nbytes}-byte array"


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "nokey.npz", images=_imgs(2))
    with pytest.raises(ValueError, match=r"no array 'arr_0' \(arrays: images\)"):
        open_images(tmp_path / "nokey.npz")
    np.savez(tmp_path / "float.npz", arr_0=_imgs(2).astype(np.float32))
    with pytest.raises(ValueError, match="dtype float32; images must be uint8"):
        open_images(tmp_path / "float.npz")
    np.savez(tmp_path / "3d.npz", arr_0=_imgs(2)[0])
    with pytest.raises(ValueError, match="must be 4-D"):
        open_images(tmp_path / "3d.npz")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not an .npz"):
        open_images(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        open_images(tmp_path / "missing.npz")
    buf = io.BytesIO()
    np.save(buf, _imgs(4))                                                  # header says 4 rows, data has 2
    with zipfile.ZipFile(tmp_path / "trunc.npz", "w") as z:
        z.writestr("arr_0.npy", buf.getvalue()[:-2 * 6 * 7 * 3])
    with pytest.raises(ValueError, match="truncated: expected 4 rows, got 2"):
        _all(open_images(tmp_path / "trunc.npz"), 3)


def _corrupt(path, compressed=False):
    """`path` with one byte of arr_0's data flipped: the zip's CRC-32 (and, deflated, the stream) no longer match."""
    (np.savez_compressed if compressed else np.savez)(path, arr_0=_imgs(8, 16, 16))
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_a_crc_error_is_a_value_error_naming_the_file(tmp_path, compressed):
    bad = _corrupt(tmp_path / "bad.npz", compressed)
    with pytest.raises(ValueError) as e:
        _all(open_images(bad), 3)
    msg = str(e.value)
    assert str(bad) in msg and "is damaged" in msg and "arr_0" in msg and "\n" not in msg, msg


def test_npz_whose_header_is_damaged_or_claims_huge_images(tmp_path):
    buf = io.BytesIO()
    np.save(buf, _imgs(2))
    with zipfile.ZipFile(tmp_path / "hdr.npz", "w") as z:
        z.writestr("arr_0.npy", b"\x93NUMPY\x01\x00garbage" + buf.getvalue()[16:])
    with pytest.raises(ValueError, match=r"hdr\.npz is damaged: reading 'arr_0' failed"):
        open_images(tmp_path / "hdr.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (2, 20000, 20000, 3)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("arr_0.npy", header.getvalue())                         # a header and no data
    with pytest.raises(ValueError, match=r"huge\.npz:arr_0 claims 20000x20000 pixels \(400 MP\)"):
        open_images(tmp_path / "huge.npz")


def test_metrics_cli_reports_a_bomb_and_a_damaged_npz_on_one_line(tmp_path, capsys):
    from bench.cli import main

    real = _write(tmp_path / "real", _imgs(6, 8, 8))
    bomb = _write(tmp_path / "bomb", _imgs(2, 8, 8))
    _bomb_png(bomb / "b.png")
    for fake, fragment in [(bomb, "b.png was refused before decoding"), (_corrupt(tmp_path / "c.npz"), "is damaged")]:
        out = tmp_path / "out.json"
        rc = main(["metrics", "--real", str(real), "--fake", str(fake), "--features", "pixels", "--metrics", "fid",
                   "--out", str(out), "--no-store", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: --fake: ") and fragment in err[0], err
        assert not out.exists()


def test_npz_grayscale_channel_is_converted(tmp_path):
    gray = _imgs(3)[..., :1]
    np.savez(tmp_path / "g.npz", arr_0=gray)
    src = open_images(tmp_path / "g.npz")
    got = _all(src)
    assert got.shape == (3, 3, 6, 7) and src.describe()["conversions"] == {"L->RGB": 3}
    np.testing.assert_array_equal(got[:, 1].numpy(), gray[..., 0])


# ---- arrays and tensors -------------------------------------------------------------------------------------

def test_arrays_nchw_and_nhwc_give_the_same_batches():
    nhwc = _imgs(5)
    a = _all(open_images(nhwc), 2)
    b = _all(open_images(torch.from_numpy(nhwc).permute(0, 3, 1, 2)), 3)
    assert torch.equal(a, b) and a.is_contiguous()
    assert ArraySource(nhwc).fingerprint() == ArraySource(torch.from_numpy(nhwc).permute(0, 3, 1, 2)).fingerprint()


def test_array_validation_messages():
    with pytest.raises(ValueError, match="must be uint8"):
        open_images(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="could be NCHW or NHWC; pass layout="):
        open_images(np.zeros((2, 3, 8, 3), np.uint8))
    got = _all(open_images(np.zeros((2, 3, 8, 3), np.uint8), layout="NHWC"))
    assert got.shape == (2, 3, 3, 8)
    with pytest.raises(ValueError, match="no channel axis of size 1, 3 or 4"):
        open_images(np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="4-D"):
        open_images(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(np.zeros((2, 3, 8, 8), np.uint8), batch_size=0))
    rgba = np.zeros((2, 4, 5, 5), np.uint8)
    src = open_images(rgba)
    assert _all(src).shape == (2, 3, 5, 5) and src.describe()["conversions"] == {"RGBA->RGB (alpha dropped)": 2}


# ---- datasets and iterables ---------------------------------------------------------------------------------

class _Dataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 3                                        # (image CHW, label)


def test_datasets_lists_callables_and_iterables_rebatch_identically():
    x = torch.from_numpy(_imgs(7)).permute(0, 3, 1, 2).contiguous()           # (7, 3, 6, 7)
    sources = [
        open_images(_Dataset(x)),
        open_images(list(x)),                                               # list of CHW images
        open_images(lambda: iter([x[:3], x[3:]])),                          # callable yielding batches
        open_images(lambda: ({"image": im.permute(1, 2, 0).numpy()} for im in x)),   # dict items, HWC numpy
        open_images([Image.fromarray(im.permute(1, 2, 0).numpy()) for im in x]),   # PIL images
    ]
    for s in sources:
        for bs in (1, 3, 8):
            batches = list(s.batches(bs))
            assert all(b.shape[0] == bs for b in batches[:-1])
            assert torch.equal(torch.cat(batches), x)
        assert s.fingerprint() == sources[0].fingerprint()
    assert len(sources[0]) == 7 and sources[2].num_images == 7


def test_one_shot_iterable_is_read_once_and_not_fingerprinted():
    x = torch.from_numpy(_imgs(4)).permute(0, 3, 1, 2)
    src = IterableSource(iter(list(x)))
    assert src.fingerprint() is None
    assert torch.equal(_all(src), x)
    with pytest.raises(ValueError, match="already consumed"):
        _all(src)


def test_iterable_mixed_sizes_error():
    items = [np.zeros((6, 7, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)]
    with pytest.raises(ValueError, match="different sizes: 7x6 and 5x5"):
        _all(open_images(items, name="gen"))
    with pytest.raises(ValueError, match="size= .* only supported for image folders"):
        open_images(items, size=8)
