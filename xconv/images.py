"""Decoding and validating user images: every format quirk lives here.

Everything downstream sees one thing only: a uint8 RGB array of shape (H, W, 3). Images that cannot
be decoded safely raise :class:`ImageError` carrying one readable line, never a library traceback.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from xconv.errors import XconvError, XconvWarning, first_line

#: Suffixes expanded when a directory is given; decoding itself sniffs content, not names.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif")

#: Refuse images above this many pixels: a small file can declare a huge canvas (decompression bomb).
#: Checked before decoding, below PIL's own limit, so PIL's global setting is left as the user has it.
MAX_PIXELS = 64_000_000
#: How much a pipe or device given as a photo (``<(curl ...)``, /dev/stdin) may hold: a file has its size, a
#: stream is read into memory until it ends, and one that never ends (/dev/zero) must stop somewhere.
MAX_STREAM_BYTES = 256 * 1024 * 1024
#: The largest side a model's input may be set to (--image-size, -O image_size): one 4096 x 4096 image is
#: 200 MB of float32 input before the network's first layer; a typo of a zero too many is refused.
MAX_IMAGE_SIDE = 4096


class ImageError(XconvError):
    """An input file that is not a usable image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # rebuilt from its arguments (see XconvError.__reduce__)
        return type(self), (self.path, self.reason)


class ImageTooLargeError(ImageError):
    """An image over the size or pixel limit (a web upload answers it with 413, not 400)."""


def expand_inputs(inputs: list[str | os.PathLike], output_folder: str | os.PathLike | None = None) -> list[Path]:
    """Expand folders to the images inside them and their sub-folders (``data/validation/cats/...``), sorted
    by relative path so runs are repeatable; hidden files and folders are skipped; files stay as given. A
    link to a photo that is gone is kept, so reading it reports it, as a missing file given by name is.

    ``output_folder``: a command's output folder; when it lies inside a folder of ``inputs``, its files are
    not inputs (a rerun would take its own pictures for photos, and renumber the rest)."""
    paths: list[Path] = []
    own = None if output_folder is None else os.path.join(os.path.realpath(output_folder), "")
    for item in inputs:
        path = Path(item)
        if is_folder(path):
            found = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                     and (p.is_file() or (p.is_symlink() and not p.exists())))
            visible = [p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            folder = os.path.join(os.path.realpath(path), "")
            if own is not None and own != folder and own.startswith(folder):  # strictly inside
                visible = [p for p in visible if not os.path.realpath(p).startswith(own)]
            visible = without_earlier_outputs(path, visible)
            paths.extend(sorted(visible, key=lambda p: p.relative_to(path).parts))
        else:
            paths.append(path)
    return paths


def without_earlier_outputs(root: Path, found: list[Path]) -> list[Path]:
    """``found`` less the pictures in xconv's output folders below ``root`` (a folder with a manifest.jsonl):
    an earlier run's overlays were explained again as photos (``xconv explain photos/`` after ``-o
    photos/out``). Said in a warning; an output folder given itself is taken as it is."""
    folders = {parent for p in found for parent in p.relative_to(root).parents if parent.parts}
    outputs = {folder for folder in folders if (root / folder / "manifest.jsonl").is_file()}
    if not outputs:
        return found
    kept = [p for p in found if not outputs.intersection(p.relative_to(root).parents)]
    names = ", ".join(sorted(str(root / folder) for folder in outputs)[:3])
    warnings.warn(f"left out {len(found) - len(kept)} pictures in xconv output folders ({names}: they hold a "
                  "manifest.jsonl); name such a folder itself to take its pictures", XconvWarning, stacklevel=3)
    return kept


def is_folder(path: Path) -> bool:
    """``path.is_dir()``, False where it cannot be asked (no permission, a name too long): the path is then
    treated as a file, and reading it reports the problem for that input alone."""
    try:
        return path.is_dir()
    except OSError:
        return False


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode any common image file to uint8 RGB (H, W, 3), EXIF orientation applied."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(path, "is a directory, not an image file")
        if not path.exists():
            raise ImageError(path, "no such file")
        if not path.is_file():  # a pipe or a device: its size says nothing, its bytes are read as they come
            return decode_bytes(read_stream(path), path)
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file")
    except OSError as error:  # permission denied on a folder above it, a name too long, ...
        raise ImageError(path, error.strerror or str(error)) from None
    return decode_image(path, path)


def read_stream(path: Path) -> bytes:
    """All the bytes of a pipe or device, refused past ``MAX_STREAM_BYTES``."""
    with path.open("rb") as stream:
        data = stream.read(MAX_STREAM_BYTES + 1)
    if len(data) > MAX_STREAM_BYTES:
        raise ImageError(path, f"not a regular file and over {MAX_STREAM_BYTES >> 20} MB without ending")
    return data


def decode_bytes(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded file's bytes like :func:`load_image` (nothing touches the disk); ``name`` is only
    used in error messages."""
    import io

    if not data:
        raise ImageError(name, "empty file")
    return decode_image(io.BytesIO(data), name, max_pixels)


#: Formats PIL can open that are never decoded here: PostScript goes through Ghostscript, a program that
#: runs the file, and the web page decodes strangers' uploads. Every other format PIL has is decoded,
#: those of plugins registered later (pillow-heif's HEIC) included.
REFUSED_FORMATS = frozenset({"EPS"})


def decoded_formats() -> list[str]:
    """Every format PIL can open now, except ``REFUSED_FORMATS``."""
    from PIL import Image

    Image.init()
    return [name for name in Image.ID if name not in REFUSED_FORMATS]  # in PIL's own order of trying


def refused_format(source) -> str | None:
    """The name of the refused format ``source`` is in, if it is in one; PIL only reads its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        if hasattr(source, "seek"):
            source.seek(0)
        with Image.open(source, formats=sorted(REFUSED_FORMATS)) as image:
            return image.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


class UnusablePixels(ValueError):
    """A file that decodes to values no photo has (NaN, infinity)."""


def decode_image(source, name, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """PIL decoding of a path or file object, with every failure turned into one ImageError line."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=decoded_formats()) as image:
                if image.width * image.height > max_pixels:
                    raise ImageTooLargeError(name, f"image too large to decode safely ({image.width}x{image.height})")
                image.seek(0)  # first frame of an animated GIF/WebP/TIFF
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(name, "image too large to decode safely (decompression bomb)") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise ImageError(name, f"cannot read it ({exc.strerror})") from None
    except UnidentifiedImageError:
        refused = refused_format(source)
        if refused:
            raise ImageError(name, f"{refused} files are not decoded (they run in Ghostscript); convert it "
                                   "to PNG or JPEG") from None
        raise ImageError(name, "not an image file (unrecognized format)") from None
    except UnusablePixels as exc:
        raise ImageError(name, str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(name, f"corrupt or truncated image ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise struct.error, KeyError, ... on odd files
        raise ImageError(name, f"could not decode ({type(exc).__name__}: {first_line(exc)})") from None


def to_rgb(image) -> np.ndarray:
    """Convert any PIL mode (grayscale, palette, alpha, 16-bit, CMYK) to uint8 RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Integer and float images: stretch their real range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all():
            raise UnusablePixels("pixel values that are not numbers (NaN or infinite)")
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        gray = np.round(scaled).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = composite_on_white(image.convert("RGBA"))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def composite_on_white(image):
    """Flatten transparency onto white, the way viewers show it, so hidden RGB values don't leak in."""
    from PIL import Image

    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB to (H, W): area averaging when shrinking (no aliasing), bilinear when growing."""
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def baseline_pixels(images: np.ndarray, kind: str, blur_sigma: float) -> np.ndarray:
    """What absent or removed pixels become, for (N, H, W, 3) uint8 ``images``: each photo blurred
    (``kind`` "blurred", Gaussian with ``blur_sigma`` pixels), or a black or mid-gray image."""
    import cv2

    if kind == "blurred":
        return np.stack([cv2.GaussianBlur(image, (0, 0), blur_sigma) for image in images])
    return np.full_like(images, 0 if kind == "black" else 128)


def shrink_to_fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down so that its longest side is at most ``max_side``, as it is when it already fits.
    Every side keeps at least a pixel: a 1 x 902 strip would round to 0 rows, which OpenCV refuses."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def load_batch(paths, size: tuple[int, int], keep_originals: bool = True
               ) -> tuple[np.ndarray, list[np.ndarray], list[Path], list[ImageError]]:
    """Decode many files at model size; return (batch, originals, good paths, errors) so a bad file loses nothing.
    ``keep_originals=False``: each photo is dropped once resized (originals come back empty), so a chunk of
    12-megapixel photos holds 36 MB at a time, not 36 MB each."""
    resized, originals, good, errors = [], [], [], []
    for path in paths:
        try:
            image = load_image(path)
        except ImageError as error:
            errors.append(error)
            continue
        resized.append(resize(image, size))
        good.append(Path(path))
        if keep_originals:
            originals.append(image)
    batch = np.stack(resized) if resized else np.zeros((0, *size, 3), np.uint8)
    return batch, originals, good, errors


def save_image(path: str | os.PathLike, rgb: np.ndarray, photo: bool = False) -> Path:
    """Write uint8 RGB to PNG/JPEG by suffix (OpenCV wants BGR: converted here, once).

    ``photo``: a photograph (an overlay), written as PNG by :mod:`xconv.png`: about 3x faster than
    OpenCV's encoder and 15 % smaller on the validation photos, still lossless; flat graphics such as
    grids and plots compress better with OpenCV's default.
    """
    import cv2

    path = Path(path)
    rgb = np.ascontiguousarray(rgb)
    from xconv.files import write_bytes
    from xconv.png import encodable, encode_rgb_png

    if photo and path.suffix.lower() == ".png" and encodable(rgb):
        data = encode_rgb_png(rgb)
    else:
        try:
            encoded, buffer = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        except cv2.error:
            encoded = False
        if not encoded:
            raise XconvError(f"could not write {path}: OpenCV has no writer for {path.suffix or 'a file without suffix'}")
        data = buffer.tobytes()
    try:  # whole or not at all: a resumed job keeps the files its manifest lists
        return write_bytes(path, data)
    except OSError as error:
        raise XconvError(f"could not write {path}: {error.strerror or error}") from None
