"""mnistlab/images.py, the one way predict.py and the demo open a user's image: damaged, hostile, rotated, deep and
huge files, and a seeded fuzz of corrupted ones."""
import gc
import io
import os
import random
import struct
import subprocess
import sys
import threading
import warnings
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, ExifTags, Image, ImageDraw, JpegImagePlugin

from helpers import PNGS, ROOT, drawing, encoded, guards, png_declaring, similar
from mnistlab import images, preprocess

# images.py silences Pillow's warnings when imported, but pytest undoes filters set while it collects.
pytestmark = pytest.mark.filterwarnings("ignore:::PIL")


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke showpage\n"


def chunks(png):
    """(offset, type) of each chunk of a PNG."""
    offset, found = 8, []
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        found.append((offset, kind))
        offset += 12 + length
    return found


def one(size=(60, 80)):
    """A dark vertical stroke on light paper: a "1" that reads differently when turned on its side."""
    image = Image.new("L", size, 235)
    ImageDraw.Draw(image).line([(size[0] / 2, size[1] * 0.15), (size[0] / 2, size[1] * 0.85)], fill=20,
                               width=max(2, size[0] // 10))
    return image


def corruptions(data, rng, count):
    """count seeded corruptions of an encoded image: flipped bytes, cut lengths, wrong chunk sizes, inserted junk."""
    for _ in range(count):
        damaged = bytearray(data)
        how = rng.randrange(4)
        if how == 0:
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif how == 1:
            damaged = damaged[:rng.randrange(len(damaged))]
        elif how == 2:  # a chunk or segment length: the first four bytes at a random place, set to a random size
            at = rng.randrange(8, len(damaged) - 4)
            damaged[at:at + 4] = struct.pack(">I", rng.choice([0, 1, 255, 65535, 2**31 - 1, rng.randrange(2**32)]))
        else:
            at = rng.randrange(len(damaged))
            damaged[at:at] = rng.randbytes(rng.randint(1, 64))
        yield bytes(damaged)


@guards("mnistlab/images.py",
        "only the formats asked for reach a decoder",
        "image = Image.open(source, formats=formats)",
        "image = Image.open(source)")
@pytest.mark.parametrize("source", ["file", "bytes"])
def test_a_format_we_do_not_read_never_reaches_a_decoder(source, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: opened.append(1))
    (tmp_path / "drawing.png").write_bytes(EPS)
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG, JPEG, BMP, GIF, WebP"):
        images.open_image(tmp_path / "drawing.png" if source == "file" else io.BytesIO(EPS))
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG\)$"):
        images.open_image(io.BytesIO(encoded(one(), "JPEG")), formats=("PNG",))
    assert opened == []


@guards("mnistlab/images.py",
        "a decoder's failure is Unreadable",
        "                try:\n                    return upright_and_small(image)\n"
        "                except Exception as e:  # SyntaxError, struct.error, NotImplementedError, ... from a damaged "
        "file\n                    raise Unreadable(f\"cannot decode it ({one_line(e)})\") from None\n",
        "                return upright_and_small(image)\n")
def test_a_png_with_a_wrong_chunk_length_is_one_problem():
    png = bytearray(encoded(one(), "PNG"))
    offset = next(offset for offset, kind in chunks(png) if kind == b"IDAT")
    png[offset:offset + 4] = struct.pack(">I", 0)
    with pytest.raises(images.Unreadable, match=r"^cannot decode it \(broken PNG file"):
        images.open_image(io.BytesIO(bytes(png)))


def test_exif_orientation_is_honoured():
    upright = one()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored turned a quarter left: to be shown turned a quarter right
    for format in ("JPEG", "PNG", "WEBP"):
        sideways = upright.transpose(Image.Transpose.ROTATE_90)
        image = images.open_image(io.BytesIO(encoded(sideways, format, exif=exif)))
        assert image.size == upright.size
        assert similar(preprocess.mnist_like(image), preprocess.mnist_like(upright)) > 0.95


def test_16_bit_greys_are_read_by_their_full_range():
    eight = one()
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    image = images.open_image(io.BytesIO(encoded(sixteen, "PNG")))
    np.testing.assert_allclose(np.asarray(image, dtype=np.float32), np.asarray(eight, dtype=np.float32), atol=1)
    np.testing.assert_allclose(preprocess.mnist_like(image), preprocess.mnist_like(eight), atol=0.02)


@guards("mnistlab/images.py",
        "an image over the pixel cap refused before decoding",
        "            if width * height > max_pixels:\n",
        "            if False:\n")
@guards("mnistlab/images.py",
        "MAX_PIXELS is 50,000,000",
        "MAX_PIXELS = 50_000_000",
        "MAX_PIXELS = 500_000_000")
@guards("mnistlab/images.py",
        "an image over Pillow's bomb limit refused in words of the cap",
        "        except Image.DecompressionBombError:\n"
        "            raise Unreadable(f\"over {max_pixels:,} pixels; scale it down\") from None\n",
        "")
def test_an_image_over_the_pixel_cap_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the cap"))
    width, height = 8000, 6251
    with pytest.raises(images.Unreadable, match=f"^{width}x{height} pixels, over 50,000,000; scale it down$"):
        images.open_image(io.BytesIO(png_declaring(width, height)))
    with pytest.raises(images.Unreadable, match="^13000x13000 pixels, over 50,000,000"):  # a 640 KB PNG
        images.open_image(io.BytesIO(png_declaring(13000, 13000)))
    with pytest.raises(images.Unreadable, match="^over 16,777,216 pixels"):  # over Pillow's own limit as well
        images.open_image(io.BytesIO(png_declaring(20000, 20000)), max_pixels=4096 * 4096)


@guards("mnistlab/images.py",
        "a file over MAX_FILE_BYTES refused before any decoder reads it",
        "        if size > MAX_FILE_BYTES:\n",
        "        if False:\n")
@guards("mnistlab/images.py",
        "MAX_FILE_BYTES is 64 MB",
        "MAX_FILE_BYTES = 64 * 1024 * 1024",
        "MAX_FILE_BYTES = 1024 * 1024 * 1024")
def test_a_file_over_the_size_cap_is_refused_before_any_decoder_reads_it(tmp_path, monkeypatch):
    # A 40x40 PNG with a private chunk that Pillow would read whole, and keep: sparse, so it costs no disk.
    path = tmp_path / "big_chunk.png"
    png = encoded(Image.new("L", (40, 40), 255), "PNG")
    with open(path, "wb") as f:
        f.write(png[:33] + struct.pack(">I4s", images.MAX_FILE_BYTES, b"abCd"))
        f.truncate(images.MAX_FILE_BYTES + 1024)
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("reached Pillow"))
    with pytest.raises(images.Unreadable, match=r"a file of 64 MB, over 64 MB; scale the image down or crop it"):
        images.open_image(path)


@guards("mnistlab/images.py",
        "a large JPEG decoded at reduced scale (WORK_SIDE)",
        "        image.draft(None, (max(1, image.width * WORK_SIDE // longest), "
        "max(1, image.height * WORK_SIDE // longest)))",
        "        pass")
@guards("mnistlab/images.py",
        "every image scaled down to WORK_SIDE right after decoding",
        "    image = image.reduce(factor) if factor > 1 else image\n",
        "")
@guards("mnistlab/images.py",
        "WORK_SIDE is 2048 px",
        "WORK_SIDE = 2048 ",
        "WORK_SIDE = 8192 ")
def test_large_jpegs_decode_reduced_and_every_image_comes_back_small(monkeypatch):
    decoded = []
    load = JpegImagePlugin.JpegImageFile.load
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", lambda self: decoded.append(self.size) or load(self))
    image = images.open_image(io.BytesIO(encoded(one((4100, 3000)), "JPEG")))
    assert decoded == [(2050, 1500)] and image.size == (1025, 750)  # then halved: reduce() takes whole factors
    scan = one((4000, 3000)).convert("1")  # a 1-bit scan: no scaling in the decoder, so right after it
    image = images.open_image(io.BytesIO(encoded(scan, "PNG")))
    assert image.size == (2000, 1500) and image.mode == "L"


def test_an_animation_is_read_by_its_first_frame():
    blank = Image.new("L", (60, 80), 235)
    frames = encoded(one(), "GIF", save_all=True, append_images=[blank])
    assert Image.open(io.BytesIO(frames)).n_frames == 2
    np.testing.assert_allclose(preprocess.mnist_like(images.open_image(io.BytesIO(frames))), preprocess.mnist_like(one()),
                               atol=0.02)


@guards("mnistlab/images.py",
        "the decoding budget held for each image's pixels",
        "            with DECODING.held(width * height):",
        "            with DECODING.held(0):")
def test_images_from_many_threads_never_decode_more_than_the_budget_at_once(monkeypatch):
    budget = images.Budget(3_000)
    monkeypatch.setattr(images, "DECODING", budget)
    upright_and_small, seen = images.upright_and_small, []

    def watched(image):
        seen.append(3_000 - budget.free)
        return upright_and_small(image)
    monkeypatch.setattr(images, "upright_and_small", watched)
    pngs = [encoded(one((40, 50)), "PNG")] * 12  # 2,000 pixels each: one at a time fits, two do not
    pngs += [encoded(one((60, 80)), "PNG")]  # 4,800 pixels, over the whole budget: it waits to have it all
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda png: images.open_image(io.BytesIO(png), max_pixels=5_000), pngs))
    assert len(seen) == 13 and sorted(seen)[-2:] == [2_000, 3_000]


@guards("mnistlab/images.py",
        "a header a plugin cannot read is Unreadable",
        "        except Exception as e:  # a plugin that recognised the file can fail on its header in many ways\n"
        "            raise Unreadable(f\"cannot decode it ({one_line(e)})\") from None\n",
        "")
def test_fuzz_every_corrupted_image_is_read_or_one_problem():
    rng = random.Random(17)
    base = one((48, 64))
    samples = {"PNG": encoded(base, "PNG"), "JPEG": encoded(base.convert("RGB"), "JPEG", quality=80),
               "GIF": encoded(base, "GIF"), "BMP": encoded(base, "BMP"), "WEBP": encoded(base, "WEBP")}
    outcomes = {"read": 0, "blank": 0, "problem": 0}
    for format, data in samples.items():
        for damaged in corruptions(data, rng, 100):
            try:
                image = images.open_image(io.BytesIO(damaged))
            except images.Unreadable as e:
                assert "\n" not in str(e) and 0 < len(str(e)) <= 200 and str(e).isprintable()
                outcomes["problem"] += 1
                continue
            assert image.mode in ("L", "LA", "RGB", "RGBA") and max(image.size) <= images.WORK_SIDE
            try:
                field = preprocess.mnist_like(image)
            except preprocess.Blank:
                outcomes["blank"] += 1
                continue
            assert field.shape == (28, 28) and np.isfinite(field).all()
            outcomes["read"] += 1
    assert min(outcomes.values()) >= 3, outcomes  # the corruptions reach every outcome


def test_a_callers_lower_pixel_cap_is_honoured(monkeypatch):
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the cap"))
    with pytest.raises(images.Unreadable, match="^5000x5000 pixels, over 16,777,216; scale it down$"):
        images.open_image(io.BytesIO(png_declaring(5000, 5000)), max_pixels=4096 * 4096)


def test_exif_orientation_survives_the_16_bit_conversion():
    upright = one()
    sideways = Image.fromarray(np.asarray(upright.transpose(Image.Transpose.ROTATE_90)).astype(np.uint16) * 257)
    assert sideways.mode == "I;16"
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    image = images.open_image(io.BytesIO(encoded(sideways, "PNG", exif=exif)))
    assert image.size == upright.size
    assert similar(np.asarray(image, dtype=np.float32), np.asarray(upright, dtype=np.float32)) > 0.95


@guards("mnistlab/images.py",
        "TIFF is not among the formats read (libtiff writes to the terminal)",
        'FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")',
        'FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")')
def test_tiff_never_reaches_libtiff_unless_asked_for():
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG, JPEG, BMP, GIF, WebP\)$"):
        images.open_image(io.BytesIO(encoded(one(), "TIFF")))


@guards("mnistlab/images.py",
        "a path that is not a regular file is Unreadable, in one line",
        "        try:\n            source = paths.open_file(source)\n        except paths.NotAFile as e:\n"
        "            raise Unreadable(f\"{e}, not an image file\" if not (e.missing or e.unreadable) else str(e))"
        " from None\n",
        "        source = paths.open_file(source)\n")
def test_a_path_that_is_not_a_regular_file_is_unreadable_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(images.Unreadable, match=r"^a named pipe \(FIFO\), not an image file$"):
        images.open_image(tmp_path / "pipe.png")
    with pytest.raises(images.Unreadable, match="^no such file or folder$"):
        images.open_image(tmp_path / "nosuch.png")


@guards("mnistlab/images.py",
        "a file refused for its size is closed",
        "            source.close()\n            raise Unreadable(",
        "            raise Unreadable(")
def test_a_file_refused_for_its_size_is_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    (tmp_path / "a.png").write_bytes(PNGS[1])
    gc.collect()  # what earlier tests left unclosed is theirs, not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            images.open_image(tmp_path / "a.png")
        except images.Unreadable as e:
            assert str(e).startswith("a file of 0 MB, over 0 MB")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@guards("mnistlab/images.py",
        "Pillow's multi-line warnings silenced",
        'warnings.filterwarnings("ignore", module=r"PIL\\.")\n',
        "")
def test_pillows_warnings_never_reach_the_terminal(tmp_path):
    # 10000x10000: over Pillow's own limit for a warning (about 89 million pixels), under its limit for an error.
    (tmp_path / "huge.png").write_bytes(png_declaring(10000, 10000))
    code = "import sys\nfrom mnistlab import images\ntry:\n    images.open_image(sys.argv[1])\nexcept images.Unreadable as e:\n    print(e)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.png")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env=env)
    assert (result.stdout, result.stderr) == ("10000x10000 pixels, over 50,000,000; scale it down\n", "")


@guards("mnistlab/images.py",
        "the budget makes an image wait until it fits",
        "            self.changed.wait_for(lambda: self.free >= pixels)\n",
        "")
@guards("mnistlab/images.py",
        "an image over the whole budget waits for all of it, not forever",
        "        pixels = min(pixels, self.size)\n",
        "")
def test_the_decoding_budget_makes_an_image_wait_for_room_and_lets_a_huge_one_through():
    budget, beside, huge = images.Budget(3_000), threading.Event(), threading.Event()

    def hold(pixels, then):
        with budget.held(pixels):
            then.set()
    with budget.held(2_000):
        threading.Thread(target=hold, args=(2_000, beside), daemon=True).start()
        assert not beside.wait(1)  # no room beside the first
    assert beside.wait(10)
    threading.Thread(target=hold, args=(5_000, huge), daemon=True).start()
    assert huge.wait(10)  # over the whole budget: it waits to have it all, not forever
    assert budget.free == 3_000


@guards("mnistlab/images.py",
        "a decoder's message made printable",
        '"".join(c if c.isprintable() else "?" for c in text[:120])',
        "text[:120]")
@guards("mnistlab/images.py",
        "a decoder's message cut to 120 characters",
        'for c in text[:120])',
        "for c in text)")
def test_a_decoders_message_becomes_one_short_printable_line():
    line = images.one_line(ValueError("bad\x1b[2J\tchunk\r\n" + "x" * 500))
    assert line == ("bad?[2J chunk " + "x" * 500)[:120]


@guards("mnistlab/images.py",
        "high-bit-depth greys beyond their range clipped, not wrapped",
        "np.clip(np.asarray(image, dtype=np.float32), 0, full)",
        "np.asarray(image, dtype=np.float32)")
def test_float_greys_beyond_their_range_are_clipped_not_wrapped():
    bright = Image.fromarray(np.full((40, 40), 3.0, dtype=np.float32), mode="F")  # 3x white
    assert np.asarray(images.open_image(io.BytesIO(encoded(bright, "TIFF")), formats=("TIFF",))).min() == 255


@guards("mnistlab/images.py",
        "the decoding budget is one image at MAX_PIXELS",
        "DECODING = Budget(MAX_PIXELS)",
        "DECODING = Budget(4 * MAX_PIXELS)")
@guards("mnistlab/images.py",
        "Pillow's blocks of 64 MB, given back to the system when freed",
        "Image.core.set_block_size(64 * 1024 * 1024)\n",
        "")
def test_reading_the_worst_allowed_images_takes_under_600_mb(tmp_path):
    # 7071x7071 is 49,999,041 pixels, just under the cap; all transparent, a few hundred KB on disk each. The most
    # memory per pixel: a palette with a transparent entry, which becomes RGBA. Two RGBA ones before it: decoded in
    # turn by different threads, they must not add up.
    side = 7071
    for name, colour_type, samples, extra in (("worst1.png", 6, 4, {}),
                                              ("worst3.png", 3, 1, dict(palette=bytes(768), transparent=b"\0"))):
        compressor = zlib.compressobj(1)
        rows = b"".join(compressor.compress(bytes(1 + samples * side)) for _ in range(side)) + compressor.flush()
        (tmp_path / name).write_bytes(png_declaring(side, side, rows, colour_type=colour_type, **extra))
    os.link(tmp_path / "worst1.png", tmp_path / "worst2.png")
    drawing(1).save(tmp_path / "worst4.png")
    (tmp_path / "worst5.png").write_bytes(png_declaring(13000, 13000))  # a bomb: refused before decoding
    # predict.py's own reading path, its threads included, without the model: torch alone takes 0.6 GB here.
    measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    read = ("import sys, predict; print([outcome if isinstance(outcome, str) else outcome[1] is None for batch in "
            "predict.readings(predict.find_images(sys.argv[1:]), False) for _, outcome in batch])")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-c", read,
                             *sorted(tmp_path.glob("worst*.png"))], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    outcomes, peak_kb = result.stdout.splitlines()
    assert outcomes == str([True, True, True, False, "13000x13000 pixels, over 50,000,000; scale it down"])
    assert int(peak_kb) < 600 * 1024, f"peak {int(peak_kb) // 1024} MB"  # 0.51 GB when this was written
