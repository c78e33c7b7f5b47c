"""DatagoClient over the filesystem source: real photos in, correct samples out."""

from __future__ import annotations

import gc
import io
import logging
import math
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import datago
from datago import _lib
from photos_util import file_config, huge_png_header, image_files, photo


def buckets(size: int = 256, ratio: int = 16, lo: float = 0.5, hi: float = 2.0) -> list[tuple]:
    """The bucket rule, restated independently of the Go code."""
    p = size // ratio
    out = set()
    for pw in range(1, 4 * p):
        for ph in (p * p // pw,):
            if ph >= 1 and lo <= pw / ph <= hi:
                out.add((pw * ratio, ph * ratio))
    for ph in range(1, 4 * p):
        pw = p * p // ph
        if pw >= 1 and lo <= pw / ph <= hi:
            out.add((pw * ratio, ph * ratio))
    return sorted(out, key=lambda b: b[0] / b[1])


def nearest(w: int, h: int, bs: list[tuple]) -> tuple:
    ar = w / h
    return min(bs, key=lambda b: (abs(b[0] / b[1] - ar), -b[0] / b[1]))


def load_all(cfg: dict) -> tuple[list[datago.Sample], dict]:
    with datago.DatagoClient(cfg) as client:
        samples = list(client)
        return samples, client.stats()


# -- real photos -------------------------------------------------------------------------------


def test_real_photos_shapes_and_modes(photo_dir: Path, photos: list[Path]) -> None:
    samples, stats = load_all(file_config(photo_dir))
    assert len(samples) == len(photos)
    assert stats["samples_skipped"] == 0
    bs = buckets()
    for s in samples:
        src = ImageOps.exif_transpose(Image.open(photo_dir / s.id))
        assert (s.original_width, s.original_height) == src.size
        assert s.source == "filesystem"
        assert s.image.mode == "RGB"
        assert s.image.size == nearest(*src.size, bs)
        arr = s.image_array
        assert arr.shape == (s.image.height, s.image.width, 3) and arr.dtype == np.uint8
        # same content as a straightforward PIL cover-resize + centre crop of the photo
        ref = ImageOps.fit(src.convert("RGB"), s.image.size, Image.Resampling.LANCZOS)
        diff = np.abs(arr.astype(int) - np.asarray(ref).astype(int)).mean()
        assert diff < 6, f"{s.id}: mean abs diff {diff:.1f} from the PIL reference"


def test_ids_are_relative_paths(photo_dir: Path) -> None:
    samples, _ = load_all(file_config(photo_dir, image_config={"crop_and_resize": False}))
    ids = sorted(s.id for s in samples)
    expected = sorted(str(p.relative_to(photo_dir)) for p in image_files(photo_dir))
    assert ids == expected


def test_no_resize_keeps_the_original_size(photo_dir: Path) -> None:
    samples, _ = load_all(file_config(photo_dir, image_config={"crop_and_resize": False}, limit=3))
    for s in samples:
        assert s.image.size == Image.open(photo_dir / s.id).size


def test_exif_rotated_photos_come_out_upright(tmp_path: Path, photos: list[Path]) -> None:
    upright = Image.open(photo("Aqua.jpg")).convert("RGB").reduce(4)  # landscape, 256x160
    # store the pixels rotated, and tag them so that a viewer rotates them back
    for orientation, stored in {
        6: upright.transpose(Image.Transpose.ROTATE_90),
        8: upright.transpose(Image.Transpose.ROTATE_270),
        3: upright.transpose(Image.Transpose.ROTATE_180),
        2: upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(tmp_path / f"o{orientation}.jpg", exif=exif, quality=95)
    upright.save(tmp_path / "o1.jpg", quality=95)
    samples, _ = load_all(file_config(tmp_path))
    assert len(samples) == 5
    ref = {s.id: s for s in samples}["o1.jpg"].image_array.astype(int)
    for s in samples:
        assert (s.original_width, s.original_height) == upright.size, s.id
        assert s.image_array.shape == ref.shape, s.id
        diff = np.abs(s.image_array.astype(int) - ref).mean()
        assert diff < 5, f"{s.id} is not upright (mean abs diff {diff:.1f})"
    # the check can fail: a photo turned upside down is far from the upright one
    flipped = np.asarray(Image.fromarray(ref.astype(np.uint8)).rotate(180)).astype(int)
    assert np.abs(flipped - ref).mean() > 15


# -- odd images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("odd")
    src = Image.open(photo("Blinds.jpg")).convert("RGB").reduce(4)  # 192x120
    rgba = src.convert("RGBA")
    alpha = np.zeros((src.height, src.width), np.uint8)
    alpha[:, : src.width // 2] = 255  # left half opaque, right half transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(d / "rgba.png")
    src.convert("L").save(d / "grey.jpg")
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) % 256 * 257).astype(np.uint16)
    Image.fromarray(ramp).save(d / "grey16.png")  # 16-bit: value v*257 must come out as v
    src.resize((1, 1)).save(d / "one.png")
    src.resize((10000, 20)).save(d / "wide.jpg")
    return d


def test_odd_images(odd_dir: Path) -> None:
    samples = {s.id: s for s in load_all(file_config(odd_dir))[0]}
    bs = buckets()
    assert samples["rgba.png"].image.mode == "RGBA"
    a = samples["rgba.png"].image_array
    assert a[:, : a.shape[1] // 4, 3].min() == 255 and a[:, -a.shape[1] // 4 :, 3].max() == 0
    assert samples["grey.jpg"].image.mode == "L"
    assert samples["grey.jpg"].image_array.shape[2] == 1
    assert samples["one.png"].image.size == (256, 256)
    assert samples["wide.jpg"].image.size == bs[-1]  # the widest bucket
    assert samples["wide.jpg"].original_width == 10000
    g16 = samples["grey16.png"]
    assert g16.image.mode == "L"


def test_16bit_values_scale_to_8bit(tmp_path: Path) -> None:
    ramp = (np.tile(np.arange(256, dtype=np.uint32), (64, 1)) * 257).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    (s,), _ = load_all(file_config(tmp_path, image_config={"crop_and_resize": False}))
    assert s.image_array.shape == (64, 256, 1)
    assert np.array_equal(s.image_array[0, :, 0], np.arange(256, dtype=np.uint8))


def test_image_to_rgb8_flattens_alpha_onto_white(odd_dir: Path) -> None:
    cfg = file_config(odd_dir, image_config={"image_to_rgb8": True})
    samples = {s.id: s for s in load_all(cfg)[0]}
    for s in samples.values():
        assert s.image.mode == "RGB" and s.image_array.shape[2] == 3, s.id
    a = samples["rgba.png"].image_array
    assert a[:, -a.shape[1] // 4 :].min() == 255  # transparent half is white
    g = samples["grey.jpg"].image_array
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_pre_encode_images(photo_dir: Path, fmt: str) -> None:
    cfg = file_config(photo_dir, image_config={"pre_encode_images": True, "encode_format": fmt})
    cfg["limit"] = 3
    samples, _ = load_all(cfg)
    assert len(samples) == 3
    for s in samples:
        assert s.image_info.encoded and s.image_info.channels == -1
        decoded = Image.open(io.BytesIO(bytes(s.image_bytes)))
        assert decoded.format == fmt.upper()
        assert decoded.size == (s.image_info.width, s.image_info.height)
        assert s.image.size == decoded.size
        with pytest.raises(ValueError, match="encoded"):
            _ = s.image_array


def test_packed_rgb_when_zero_copy_is_off(photo_dir: Path) -> None:
    cfg = file_config(photo_dir, image_config={"pil_zero_copy": False}, limit=2)
    for s in load_all(cfg)[0]:
        assert s.image_array.flags.c_contiguous
        assert s.image_info.nbytes == s.image.width * s.image.height * 3
        assert s.image.mode == "RGB"


# -- bad input ---------------------------------------------------------------------------------


def test_bad_files_are_skipped_and_counted(
    tmp_path: Path, photos: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Every broken file is refused the same way on every run: the corruptions are fixed bytes
    (no random input) — files libvips cannot open (decode_error), damaged image data refused by
    the default fail_on "warning" (corrupt_data: truncation, corrupt JPEG entropy data, a bad
    IDAT CRC; see tests/data/corrupt), and a decompression bomb."""
    good = photos[:3]
    for p in good:
        shutil.copy(p, tmp_path / p.name)
    jpeg = photo("Storm.jpg").read_bytes()
    png = photo("Infinite-Sea_by_Aury88.png").read_bytes()
    sos = jpeg.index(b"\xff\xda")  # start of scan: the headers end here
    corrupt = Path(__file__).resolve().parent / "data" / "corrupt"
    bad = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],  # the scan stops a third of the way: corrupt_data
        "header_only.jpg": jpeg[: sos + 2],  # headers, no scan: decode_error
        "zeros.jpg": bytes(len(jpeg)),  # no image signature: decode_error
        "truncated.png": png[: len(png) // 2],  # IDAT cut in half: corrupt_data
        "empty.jpg": b"",  # decode_error
        "text.png": b"I am not a PNG",  # decode_error
        "bomb.png": huge_png_header(60000, 60000),  # too_many_pixels
        # libjpeg warns "Corrupt JPEG data" below the crop window: corrupt_data
        "entropy.jpg": (corrupt / "jpeg_marker_bottom_tall.jpg").read_bytes(),
        "idat_crc.png": (corrupt / "png_idat_crc_last.png").read_bytes(),  # corrupt_data
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    samples, stats = load_all(file_config(tmp_path))
    assert sorted(s.id for s in samples) == sorted(p.name for p in good)
    assert stats["samples_skipped"] == len(bad)
    assert stats["skipped_reasons"] == {"too_many_pixels": 1, "decode_error": 4, "corrupt_data": 4}
    assert stats["corrupt_data"] == 4
    err = caplog.text  # the core's warnings reach the "datago" logger
    for name in bad:
        assert name in err, f"{name} was not logged with its path"


def test_pixel_cap_is_configurable(photo_dir: Path) -> None:
    files = image_files(photo_dir)
    pixels = sorted(w * h for w, h in (Image.open(p).size for p in files))
    cap = pixels[len(pixels) // 2]  # the median photo passes, the larger half is refused
    cfg = file_config(photo_dir, image_config={"max_pixels": cap})
    samples, stats = load_all(cfg)
    for s in samples:
        assert s.original_width * s.original_height <= cap
    assert len(samples) == sum(n <= cap for n in pixels)
    assert stats["skipped_reasons"] == {"too_many_pixels": sum(n > cap for n in pixels)}
    assert len(samples) + stats["samples_skipped"] == len(files)


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "exc", "match"),
    [
        ({"bogus": 1}, ValueError, "bogus"),
        ({"image_config": {"crop_and_resize": True, "sise": 3}}, ValueError, "sise"),
        ({"source_config": {"root_path": "/x", "rot_path": 1}}, ValueError, "rot_path"),
        ({"source_config": {"root_path": "/does/not/exist"}}, FileNotFoundError, "root_path"),
        ({"source_config": {}}, ValueError, "root_path"),
        ({"limit": -1}, ValueError, "limit"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank"),
        ({"source_config": {"root_path": "/tmp", "rank": 4, "world_size": 4}}, ValueError, "rank"),
        ({"source_type": "s3"}, ValueError, "source_type"),
        ({"image_config": {"crop_and_resize": True, "default_image_size": 250}}, ValueError, "multiple"),
    ],
)
def test_bad_config(photo_dir: Path, patch: dict, exc: type, match: str) -> None:
    cfg = file_config(photo_dir)
    for k, v in patch.items():
        cfg[k] = v
    with pytest.raises(exc, match=match):
        datago.DatagoClient(cfg)


def test_config_as_json_string_and_datago_keys(photo_dir: Path) -> None:
    import json

    cfg = file_config(photo_dir, limit=2, num_threads=1, max_connections=1, prefetch_buffer_size=2)
    cfg["image_config"].update(pre_encode_images=False, image_to_rgb8=False, jpeg_quality=92)
    with datago.DatagoClient(json.dumps(cfg)) as client:
        assert len(list(client)) == 2
    with pytest.raises(TypeError):
        datago.DatagoClient(42)  # type: ignore[arg-type]


def test_unreadable_root(tmp_path: Path) -> None:
    """A root_path that cannot be read raises an OSError naming root_path, for every user: a
    symbolic-link loop (ELOOP, root included). A folder of mode 0 is refused the same way, except
    to root, who reads it: its (empty) epoch has no sample."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError, match="root_path"):
        datago.DatagoClient(file_config(loop))
    d = tmp_path / "locked"
    d.mkdir(mode=0)
    if os.getuid() == 0:
        with datago.DatagoClient(file_config(d)) as client:
            assert list(client) == []
    else:
        with pytest.raises(OSError):
            datago.DatagoClient(file_config(d))


# -- stream semantics --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 50])
def test_exact_limit(small_photo_dir: Path, limit: int) -> None:
    samples, _ = load_all(file_config(small_photo_dir, limit=limit))
    assert len(samples) == limit
    assert len({s.id for s in samples}) == limit


def test_limit_larger_than_dataset(small_photo_dir: Path) -> None:
    samples, _ = load_all(file_config(small_photo_dir, limit=10_000))
    assert len(samples) == 120


@pytest.mark.parametrize("world_size", range(1, 9))
def test_rank_split_is_disjoint_and_complete(small_photo_dir: Path, world_size: int) -> None:
    seen: list[str] = []
    for rank in range(world_size):
        cfg = file_config(
            small_photo_dir,
            source_config={"rank": rank, "world_size": world_size, "random_sampling": True},
            image_config={"crop_and_resize": False},
        )
        ids = [s.id for s in load_all(cfg)[0]]
        assert abs(len(ids) - 120 / world_size) <= 1
        seen += ids
    assert len(seen) == len(set(seen)) == 120


def test_top_level_rank_keys(small_photo_dir: Path) -> None:
    a = {s.id for s in load_all(file_config(small_photo_dir, rank=0, world_size=2))[0]}
    b = {s.id for s in load_all(file_config(small_photo_dir, rank=1, world_size=2))[0]}
    assert not a & b and len(a | b) == 120


def test_random_sampling(small_photo_dir: Path) -> None:
    def order(**src: object) -> list[str]:
        cfg = file_config(small_photo_dir, source_config=src, num_threads=1, max_connections=1,
                          image_config={"crop_and_resize": False})
        return [s.id for s in load_all(cfg)[0]]

    a, b = order(random_sampling=True), order(random_sampling=True)
    assert a != b
    assert sorted(a) == sorted(b) == sorted(order())
    assert order(random_sampling=True, seed=3) == order(random_sampling=True, seed=3)


def test_start_stop_idempotent_and_new_epoch(small_photo_dir: Path) -> None:
    client = datago.DatagoClient(file_config(small_photo_dir))
    client.start()
    client.start()
    first = [client.get_sample().id for _ in range(5)]
    client.stop()
    client.stop()
    epoch = [s.id for s in client]  # a start after a stop is a new, complete epoch
    assert len(epoch) == 120 and set(first) <= set(epoch)
    assert client.get_sample() is None
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.get_sample()


def test_timeout(photo_dir: Path) -> None:
    cfg = file_config(photo_dir, image_config={"default_image_size": 1024}, num_threads=1)
    with datago.DatagoClient(cfg) as client:
        with pytest.raises(TimeoutError):
            client.get_sample(timeout=0.0)
        assert client.get_sample(timeout=60) is not None  # the stream goes on


def test_waiting_releases_the_gil(photo_dir: Path) -> None:
    cfg = file_config(photo_dir, image_config={"crop_and_resize": False}, num_threads=1)
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    with datago.DatagoClient(cfg) as client:
        t = threading.Thread(target=spin)
        t.start()
        start = time.perf_counter()
        for _ in client:
            pass
        elapsed = time.perf_counter() - start
        stop.set()
        t.join()
    # the spinning thread ran while the main thread waited for samples
    assert ticks > 10_000 * elapsed, (ticks, elapsed)


def test_stats(small_photo_dir: Path) -> None:
    samples, stats = load_all(file_config(small_photo_dir))
    assert stats["samples_produced"] == len(samples) == 120
    stages = {s["name"]: s for s in stats["stages"]}
    assert list(stages) == ["list", "fetch", "process", "output"]
    assert stages["fetch"]["items_out"] == 120 and stages["process"]["items_out"] == 120
    assert stages["process"]["busy_seconds"] > 0
    total = sum(p.stat().st_size for p in small_photo_dir.iterdir())
    assert stats["bytes_read"] == total


# -- memory ------------------------------------------------------------------------------------


def _address(sample: datago.Sample) -> int:
    return int(_lib.ffi.cast("uintptr_t", sample._c.image.data))


def test_numpy_view_is_zero_copy(photo_dir: Path) -> None:
    with datago.DatagoClient(file_config(photo_dir, limit=1)) as client:
        s = client.get_sample()
    arr = s.image_array
    assert arr.__array_interface__["data"][0] == _address(s)
    assert not arr.flags.writeable
    # the PIL image maps the same C buffer: a write to the C memory shows through both
    im = s.image
    before = im.getpixel((0, 0))
    _lib.ffi.memmove(s._c.image.data, bytes([(before[0] + 77) % 256]), 1)
    assert im.getpixel((0, 0))[0] == (before[0] + 77) % 256
    assert arr[0, 0, 0] == (before[0] + 77) % 256


def test_view_outlives_sample_then_memory_returns(photo_dir: Path) -> None:
    gc.collect()
    base_samples, base_bytes = datago.live_samples()
    with datago.DatagoClient(file_config(photo_dir, limit=2)) as client:
        s = client.get_sample()
        other = client.get_sample()
    arr, im = s.image_array, s.image
    expected = np.array(arr)
    del s, other
    gc.collect()
    live, nbytes = datago.live_samples()
    assert live == base_samples + 1  # the views keep exactly their sample alive
    assert nbytes > base_bytes
    assert np.array_equal(arr, expected) and np.array_equal(np.asarray(im), expected)
    del arr
    gc.collect()
    assert datago.live_samples()[0] == base_samples + 1  # the PIL image still holds it
    del im
    gc.collect()
    assert datago.live_samples() == (base_samples, base_bytes)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_returns_to_baseline_after_thousands_of_samples(small_photo_dir: Path) -> None:
    gc.collect()
    base = datago.live_samples()
    client = datago.DatagoClient(file_config(small_photo_dir))
    n = 0
    rss_after_warmup = 0
    for epoch in range(25):  # 25 epochs x 120 samples = 3000 samples
        for s in client:
            assert s.image.size == s.image_array.shape[1::-1]
            n += 1
        client.stop()
        if epoch == 2:
            gc.collect()
            rss_after_warmup = _rss_bytes()
    del s  # the loop variable holds the last sample
    gc.collect()
    assert n == 3000
    assert datago.live_samples() == base
    growth = _rss_bytes() - rss_after_warmup
    assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 2600 samples"
    client.close()


def test_stop_mid_stream_frees_queued_samples(photo_dir: Path) -> None:
    gc.collect()
    base = datago.live_samples()
    for _ in range(3):
        client = datago.DatagoClient(file_config(photo_dir, samples_buffer_size=4))
        s = client.get_sample()
        time.sleep(0.3)  # the queue fills up behind the consumer
        client.stop()
        del s
        client.close()
    gc.collect()
    assert datago.live_samples() == base


# -- fork --------------------------------------------------------------------------------------


def test_fork_raises_a_clear_error(small_photo_dir: Path) -> None:
    client = datago.DatagoClient(file_config(small_photo_dir, limit=2))
    assert client.get_sample() is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never call into Go; report what happened through the pipe
        code = b"?"
        try:
            client.get_sample()
            code = b"no error"
        except datago.ForkError:
            try:
                datago.DatagoClient(file_config(small_photo_dir))
                code = b"new client worked"
            except datago.ForkError:
                code = b"ok"
        except BaseException as e:
            code = repr(e).encode()
        os.write(w, code)
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    msg = os.read(r, 1000)
    os.close(r)
    assert msg == b"ok", msg
    assert client.get_sample() is not None  # the parent is unaffected
    client.close()


def test_version_and_logging() -> None:
    assert datago.version().count(".") == 2
    with pytest.raises(ValueError, match="log level"):
        datago.initialize_logging("loud")
    datago.initialize_logging("error")
    datago.initialize_logging("warn")


def test_errors_are_datago_errors_and_builtins(tmp_path: Path) -> None:
    """Each error kind of the core is a DatagoError subclass that is also the builtin users catch."""
    with pytest.raises(datago.ConfigError, match="nope") as bad_key:
        datago.DatagoClient({"source_type": "file", "nope": 1})
    assert isinstance(bad_key.value, ValueError) and isinstance(bad_key.value, datago.DatagoError)
    with pytest.raises(datago.NotFoundError, match=str(tmp_path / "missing")) as missing:
        datago.DatagoClient(file_config(tmp_path / "missing"))
    assert isinstance(missing.value, FileNotFoundError)
    client = datago.DatagoClient(file_config(tmp_path))
    client.close()
    with pytest.raises(datago.ClosedError) as closed:
        client.get_sample()
    assert isinstance(closed.value, RuntimeError) and isinstance(closed.value, ValueError)
    assert issubclass(datago.DatagoOSError, OSError) and issubclass(datago.ForkError, RuntimeError)
    assert issubclass(datago.SampleTimeoutError, TimeoutError)


def test_abi_version_is_checked() -> None:
    """A library built for another C ABI than the package's datago.h is refused at load."""
    from datago import _lib

    lib = _lib.lib()
    assert lib.datago_abi_version() == lib.DATAGO_ABI_VERSION

    class Other:
        DATAGO_ABI_VERSION = lib.DATAGO_ABI_VERSION

        @staticmethod
        def datago_abi_version() -> int:
            return lib.DATAGO_ABI_VERSION + 1

    with pytest.raises(datago.AbiVersionError, match="C ABI version"):
        _lib.check_abi(Other(), "libdatago.so")


def test_bucket_rule_matches_the_core(photo_dir: Path) -> None:
    """Every bucket the core picks is one of the rule's, and its aspect ratio is the nearest."""
    bs = buckets()
    assert all(w % 16 == 0 and h % 16 == 0 and 0.5 <= w / h <= 2.0 for w, h in bs)
    assert all(0.85 * 256**2 <= w * h <= 256**2 for w, h in bs)
    for s in load_all(file_config(photo_dir))[0]:
        assert s.image.size in bs
        ar = s.original_width / s.original_height
        best = min(abs(w / h - ar) for w, h in bs)
        assert math.isclose(abs(s.image.width / s.image.height - ar), best, abs_tol=1e-9)
