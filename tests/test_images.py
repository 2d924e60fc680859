"""images.py, the one way predict.py and demo.py open a user's image: damaged, hostile, rotated, deep and huge
files, and a seeded fuzz of corrupted ones."""
import io
import random
import struct

import numpy as np
import pytest
from PIL import EpsImagePlugin, ExifTags, Image, ImageDraw, JpegImagePlugin

import images
import preprocess
from conftest import png_declaring

# images.py silences Pillow's warnings when imported, but pytest undoes filters set while it collects.
pytestmark = pytest.mark.filterwarnings("ignore:::PIL")

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke showpage\n"


def encoded(image, format, **params):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


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


def similar(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("source", ["file", "bytes"])
def test_a_format_we_do_not_read_never_reaches_a_decoder(source, tmp_path, monkeypatch):  # case 10's EPS
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: opened.append(1))
    (tmp_path / "drawing.png").write_bytes(EPS)
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG, JPEG, BMP, GIF, WebP"):
        images.open_image(tmp_path / "drawing.png" if source == "file" else io.BytesIO(EPS))
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG\)$"):
        images.open_image(io.BytesIO(encoded(one(), "JPEG")), formats=("PNG",))
    assert opened == []


def test_a_png_with_a_wrong_chunk_length_is_one_problem():  # case 2: Pillow raises SyntaxError here
    png = bytearray(encoded(one(), "PNG"))
    offset = next(offset for offset, kind in chunks(png) if kind == b"IDAT")
    png[offset:offset + 4] = struct.pack(">I", 0)
    with pytest.raises(images.Unreadable, match=r"^cannot decode it \(broken PNG file"):
        images.open_image(io.BytesIO(bytes(png)))


def test_exif_orientation_is_honoured():  # case 3
    upright = one()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored turned a quarter left: to be shown turned a quarter right
    for format in ("JPEG", "PNG", "WEBP"):
        sideways = upright.transpose(Image.Transpose.ROTATE_90)
        image = images.open_image(io.BytesIO(encoded(sideways, format, exif=exif)))
        assert image.size == upright.size
        assert similar(preprocess.mnist_like(image), preprocess.mnist_like(upright)) > 0.95


def test_16_bit_greys_are_read_by_their_full_range():  # case 4
    eight = one()
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    image = images.open_image(io.BytesIO(encoded(sixteen, "PNG")))
    np.testing.assert_allclose(np.asarray(image, dtype=np.float32), np.asarray(eight, dtype=np.float32), atol=1)
    np.testing.assert_allclose(preprocess.mnist_like(image), preprocess.mnist_like(eight), atol=0.02)


def test_an_image_over_the_pixel_cap_is_refused_before_decoding(monkeypatch):  # case 7
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the cap"))
    width, height = 8000, 6251
    with pytest.raises(images.Unreadable, match=f"^{width}x{height} pixels, over 50,000,000; scale it down$"):
        images.open_image(io.BytesIO(png_declaring(width, height)))
    with pytest.raises(images.Unreadable, match="^13000x13000 pixels, over 50,000,000"):  # the 640 KB PNG
        images.open_image(io.BytesIO(png_declaring(13000, 13000)))
    with pytest.raises(images.Unreadable, match="^over 16,777,216 pixels"):  # over Pillow's own limit as well
        images.open_image(io.BytesIO(png_declaring(20000, 20000)), max_pixels=4096 * 4096)


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


def test_large_jpegs_decode_reduced_and_every_image_comes_back_small(monkeypatch):  # case 7
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


def test_images_from_many_threads_never_decode_more_than_the_budget_at_once(monkeypatch):  # case 7
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
