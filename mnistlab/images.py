"""Opening a user's image safely, for predict.py and demo.py alike.

Only the formats named here reach a decoder, and only images under a pixel cap, checked before decoding. Large
images are scaled down as they are decoded (JPEG) or right after, and the first frame of an animation is the one
read. Every way a decoder can fail on a damaged or hostile file, of which Pillow has many, becomes Unreadable, a
one-line problem for that file.
"""
import contextlib
import math
import os
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab import paths

# Pillow's names. Not TIFF: libtiff writes its complaints about a damaged file straight to the terminal.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
NAMES = {"WEBP": "WebP"}
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_PIXELS = 50_000_000  # width x height, as the file declares it
# Decoders read some parts of a file whole, whatever its pixels: a PNG's ancillary chunks, a JPEG's APP segments.
MAX_FILE_BYTES = 64 * 1024 * 1024
WORK_SIDE = 2048         # px: the longest side an image is read at; a digit needs far fewer
# The full range of high-bit-depth modes, read as 0 to 255: 16-bit integers (Pillow widens them to "I") and floats.
FULL_RANGE = {"I": 65535, "F": 1.0}
# Pillow warns, in several lines, of damaged files that it reads anyway and of images over its own pixel limit,
# which is above MAX_PIXELS; here a file is read or refused in one line.
warnings.filterwarnings("ignore", module=r"PIL\.")
# Pillow allocates images in blocks, 16 MB by default, which glibc keeps in each thread's arena once freed, so
# that large images decoded in turn by several threads add up. Blocks over glibc's largest mmap threshold, 32 MB,
# are mapped, and given back to the system when freed.
Image.core.set_block_size(64 * 1024 * 1024)


class Unreadable(Exception):
    """An image that cannot be read; the message is one line for that file."""


class Budget:
    """Pixels that threads may decode at full size at once: each image waits until it fits beside the others, so
    memory stays that of one image at MAX_PIXELS however many threads decode. An image larger than the whole
    budget waits to have it all."""

    def __init__(self, pixels):
        self.size = self.free = pixels
        self.changed = threading.Condition()

    @contextlib.contextmanager
    def held(self, pixels):
        pixels = min(pixels, self.size)
        with self.changed:
            self.changed.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self.changed:
                self.free += pixels
                self.changed.notify_all()


DECODING = Budget(MAX_PIXELS)


def format_names(formats):
    return ", ".join(NAMES.get(name, name) for name in formats)


def one_line(error):
    """An exception as a short line of printable text, for a message."""
    text = " ".join(str(error).split()) or type(error).__name__
    return "".join(c if c.isprintable() else "?" for c in text[:120])


def open_image(source, formats=FORMATS, max_pixels=MAX_PIXELS):
    """The first frame of the image at source (a path, or a binary file such as BytesIO), decoded, upright as its
    EXIF orientation says, in mode L, LA, RGB or RGBA, and at most WORK_SIDE on its longest side.

    Raises Unreadable for a path that is not a regular file, a file over MAX_FILE_BYTES, a format not in formats,
    an image over max_pixels, and anything the decoder raises.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            source = paths.open_file(source)
        except paths.NotAFile as e:
            raise Unreadable(f"{e}, not an image file" if not (e.missing or e.unreadable) else str(e)) from None
        size = os.fstat(source.fileno()).st_size
        if size > MAX_FILE_BYTES:
            source.close()
            raise Unreadable(f"a file of {size / 1024**2:,.0f} MB, over {MAX_FILE_BYTES // 1024**2} MB; scale the "
                             f"image down or crop it")
    with source:
        try:
            image = Image.open(source, formats=formats)
        except UnidentifiedImageError:
            raise Unreadable(f"not an image in a format it reads ({format_names(formats)})") from None
        except Image.DecompressionBombError:
            raise Unreadable(f"over {max_pixels:,} pixels; scale it down") from None
        except Exception as e:  # a plugin that recognised the file can fail on its header in many ways
            raise Unreadable(f"cannot decode it ({one_line(e)})") from None
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise Unreadable(f"{width}x{height} pixels, over {max_pixels:,}; scale it down")
            with DECODING.held(width * height):
                try:
                    return upright_and_small(image)
                except Exception as e:  # SyntaxError, struct.error, NotImplementedError, ... from a damaged file
                    raise Unreadable(f"cannot decode it ({one_line(e)})") from None


def upright_and_small(image):
    """open_image's work once the file is open: decode, scale down, reach 8 bits, turn upright."""
    exif = image.getexif()  # read before any conversion, which drops TIFF's own tags
    longest = max(image.size)
    if longest > WORK_SIDE:  # JPEG decodes at 1/2, 1/4 or 1/8 scale for the asking; other formats ignore this
        image.draft(None, (max(1, image.width * WORK_SIDE // longest), max(1, image.height * WORK_SIDE // longest)))
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # the modes that reduce() takes
        image = image.convert("I" if image.mode.startswith("I;16") else "L" if image.mode == "1" else
                              "RGBA" if image.has_transparency_data else "RGB")
    factor = math.ceil(max(image.size) / WORK_SIDE)
    image = image.reduce(factor) if factor > 1 else image
    if image.mode in FULL_RANGE:
        full = FULL_RANGE[image.mode]
        values = np.clip(np.asarray(image, dtype=np.float32), 0, full)
        image = Image.fromarray((values * (255 / full)).round().astype(np.uint8))
    image.info["exif"] = exif.tobytes()
    return ImageOps.exif_transpose(image)
