"""Every image quirk: formats, modes, orientation, and files that must be refused with one line."""

import io

import numpy as np
import pytest
from PIL import Image

import xconv
from xconv.images import MAX_PIXELS, ImageError, expand_inputs, load_batch, load_image

RED = (220, 30, 40)


def red_image(mode="RGB", size=(12, 8)):
    return Image.new("RGB", size, RED).convert(mode)


@pytest.mark.parametrize("suffix,fmt", [
    (".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP"), (".webp", "WEBP"), (".tif", "TIFF"), (".gif", "GIF"),
])
def test_formats_decode_to_rgb_uint8(tmp_path, suffix, fmt):
    path = tmp_path / f"red{suffix}"
    options = {"lossless": True} if fmt == "WEBP" else {}
    red_image().save(path, fmt, **options)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (8, 12, 3)
    assert np.allclose(image.reshape(-1, 3).mean(0), RED, atol=12)


def test_rarer_formats_decode_but_postscript_is_never_opened(tmp_path):
    """EPS would run in Ghostscript, a program: the web page decodes strangers' uploads with this function.
    Every other format PIL reads still decodes (a first fix allowed a list, and refused JPEG 2000 and PCX)."""
    frames = [red_image(size=(12, 8)), red_image(size=(12, 8))]
    frames[0].save(tmp_path / "camera.jpg", "MPO", save_all=True, append_images=frames[1:])
    for name, fmt in (("red.ppm", "PPM"), ("red.pcx", "PCX"), ("red.sgi", "SGI")):
        red_image().save(tmp_path / name, fmt)
    for name in ("camera.jpg", "red.ppm", "red.pcx", "red.sgi"):
        assert np.allclose(load_image(tmp_path / name).reshape(-1, 3).mean(0), RED, atol=12)
    eps = tmp_path / "page.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="EPS files are not decoded"):
        load_image(eps)
    with pytest.raises(ImageError, match="EPS files are not decoded"):
        xconv.images.decode_bytes(eps.read_bytes(), "upload.eps")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_float_image_with_values_that_are_not_numbers_is_refused(tmp_path, value):
    """Stretching NaN to 8 bits made a garbage photo that was classified without a word."""
    pixels = np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(40, 50)
    pixels[3, 4] = value
    Image.fromarray(pixels, mode="F").save(tmp_path / "float.tif")
    with pytest.raises(ImageError, match="not numbers"):
        load_image(tmp_path / "float.tif")


def test_gif_uses_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (6, 6), color) for color in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    image = load_image(path)
    assert image[..., 0].mean() > 200 and image[..., 2].mean() < 50


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L").save(path)
    image = load_image(path)
    assert image.shape == (8, 8, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    assert image[7, 7, 0] == 252


def test_palette_image_keeps_its_colors(tmp_path):
    path = tmp_path / "palette.png"
    red_image().convert("P", palette=Image.ADAPTIVE, colors=4).save(path)
    assert np.allclose(load_image(path)[0, 0], RED, atol=8)


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # hidden red under full transparency must not leak through
    rgba[:2, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path)
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[3, 3]) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    image = load_image(path)
    assert image[0, 0, 0] == 0 and image[1, 1, 0] == 255
    assert 100 < image[1, 0, 0] < 130  # 30000 / 65535 of the range, not clipped to 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    red_image("CMYK").save(path, "JPEG", quality=95)
    image = load_image(path)
    assert image.shape == (8, 12, 3)
    assert np.allclose(image.reshape(-1, 3).mean(0), RED, atol=25)


def test_exif_orientation_is_honored(tmp_path):
    path = tmp_path / "rotated.jpg"
    array = np.zeros((10, 20, 3), np.uint8)
    array[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was rotated: display rotated 90 degrees clockwise
    Image.fromarray(array).save(path, "JPEG", exif=exif.tobytes(), quality=100)
    image = load_image(path)
    assert image.shape == (20, 10, 3)
    assert image[:8].mean() > 200 and image[-8:].mean() < 50  # the white half is now on top


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(path)


def test_a_pipe_is_read_as_it_comes_and_an_endless_device_is_refused(tmp_path, monkeypatch):
    import os
    import threading

    fifo = tmp_path / "photo.png"  # what bash's <(curl ...) gives: a pipe whose size is 0
    os.mkfifo(fifo)
    payload = io.BytesIO()
    red_image().save(payload, format="PNG")
    writer = threading.Thread(target=fifo.write_bytes, args=(payload.getvalue(),))
    writer.start()
    image = load_image(fifo)
    writer.join()
    assert image.shape == (8, 12, 3) and (image == RED).all()
    writer = threading.Thread(target=fifo.write_bytes, args=(b"",))
    writer.start()
    with pytest.raises(ImageError, match="empty file"):
        load_image(fifo)
    writer.join()
    monkeypatch.setattr(xconv.images, "MAX_STREAM_BYTES", 1 << 20)
    with pytest.raises(ImageError, match="not a regular file and over 1 MB"):
        load_image("/dev/zero")


def test_an_earlier_runs_output_folder_is_not_read_as_photos(tmp_path):
    """``xconv explain photos`` after ``-o photos/out`` explained the overlays again (000_..._gradcam_...)."""
    Image.new("RGB", (4, 4)).save(tmp_path / "cat.png")
    (tmp_path / "out").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "out" / "cat_gradcam_cat.png")
    (tmp_path / "out" / "manifest.jsonl").write_text("")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "dog.png")
    with pytest.warns(xconv.XconvWarning, match="left out 1 pictures in xconv output folders"):
        assert expand_inputs([tmp_path]) == [tmp_path / "cat.png", tmp_path / "sub" / "dog.png"]
    assert expand_inputs([tmp_path / "out"]) == [tmp_path / "out" / "cat_gradcam_cat.png"]  # named itself: taken


def test_truncated_jpeg_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_corrupt_png_is_refused(tmp_path):
    buffer = io.BytesIO()
    red_image().save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[40:60] = b"\x00" * 20
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert "bad.png" in str(caught.value) and "\n" not in str(caught.value)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(path)


def test_directory_and_missing_file_are_refused(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    side = int(MAX_PIXELS ** 0.5) + 100
    Image.new("1", (side, side)).save(path)  # a few KB on disk, a huge canvas once decoded
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_batch_keeps_good_files_and_lists_bad_ones(tmp_path):
    good = tmp_path / "good.png"
    red_image(size=(40, 30)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    batch, originals, paths, errors = load_batch([good, bad, good], (16, 16))
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    assert originals[0].shape == (30, 40, 3)
    assert paths == [good, good]
    assert [e.path for e in errors] == [str(bad)]


def test_directories_expand_to_their_images(tmp_path):
    for name in ["b.png", "a.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.jpg", "b.png"]
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # was dropped without a word
    (tmp_path / "shelf.png").mkdir()  # a folder named like a photo is no photo
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.jpg", "b.png", "gone.jpg"]
    with pytest.raises(ImageError, match="gone.jpg"):
        load_image(tmp_path / "gone.jpg")


def test_any_decoder_failure_is_one_image_error(tmp_path, monkeypatch):
    from PIL import Image, ImageOps

    import xconv

    path = tmp_path / "odd.png"
    Image.new("RGB", (4, 4)).save(path)

    def broken_exif(image):
        raise KeyError(274)  # what a malformed orientation tag has made Pillow raise

    monkeypatch.setattr(ImageOps, "exif_transpose", broken_exif)
    with pytest.raises(xconv.ImageError, match="odd.png: could not decode \\(KeyError"):
        xconv.load_image(path)


@pytest.mark.parametrize("photo", [False, True])
def test_saved_png_reads_back_identical_in_rgb_order(tmp_path, photo):
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[:, :10] = (255, 0, 0)  # a red band: a BGR mix-up would read back blue
    path = xconv.save_image(tmp_path / "picture.png", rgb, photo=photo)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)


@pytest.mark.parametrize("photo", [False, True])
def test_an_interrupted_write_leaves_the_previous_picture_whole(tmp_path, photo, monkeypatch):
    """A resumed job keeps the pictures its manifest lists: one killed mid-write must not be half a PNG."""
    from pathlib import Path

    path = xconv.save_image(tmp_path / "picture.png", np.zeros((8, 8, 3), np.uint8), photo=photo)
    before = path.read_bytes()

    def killed_midway(self, data):
        with open(self, "wb") as file:
            file.write(data[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        xconv.save_image(path, np.full((8, 8, 3), 200, np.uint8), photo=photo)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["picture.png"]
    from xconv.files import UMASK

    fresh = xconv.save_image(tmp_path / "fresh.png", np.zeros((8, 8, 3), np.uint8), photo=photo)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~UMASK  # not the temporary file's private 0600
    with pytest.raises(xconv.XconvError, match="no writer for .xyz"):
        xconv.save_image(tmp_path / "picture.xyz", np.zeros((8, 8, 3), np.uint8))


def test_atomic_writes_keep_links_and_fit_names_near_the_limit(tmp_path):
    from xconv.files import write_bytes

    import xconv

    target = tmp_path / "kept" / "blob"  # a link's target need not carry the suffix that names the format
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "report.png"
    link.symlink_to(target)
    xconv.save_image(link, np.zeros((4, 4, 3), np.uint8))
    assert link.is_symlink() and target.read_bytes().startswith(b"\x89PNG")  # the link stays, its file is replaced
    for name in ("n" * 251 + ".png", "é" * 125 + ".png"):  # 255 and 254 bytes: the temporary name is cut to fit
        write_bytes(tmp_path / name, b"whole")
        assert (tmp_path / name).read_bytes() == b"whole"
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary file left, beside the link or its target


def test_user_errors_survive_pickling_to_other_processes():
    """Ray workers and process pools send exceptions back pickled; ours must arrive with their message."""
    import pickle

    from xconv.errors import UnknownNameError

    errors = (xconv.XconvError("no such model file"), UnknownNameError("class", "horse", ["cat", "dog"], "a note"),
              ImageError("p.jpg", "not an image"))
    for error in errors:
        message = str(error)
        error.args = (f"{error.args[0]}\nretry advice a Ray worker appends",)  # as Ray Data does to a failed task
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == message and vars(again) == vars(error)


def test_shrinking_to_fit_keeps_a_pixel_a_side():
    """A 1 x 902 strip shrunk to 320 px would round to 0 rows (OpenCV refuses): the web page's display copy
    and every inlined picture of a report or notebook go through this one helper."""
    from xconv.html import jpeg_data_url
    from xconv.images import shrink_to_fit

    strip = np.zeros((1, 902, 3), np.uint8)
    assert shrink_to_fit(strip, 320).shape == (1, 320, 3)
    photo = np.zeros((300, 451, 3), np.uint8)
    assert shrink_to_fit(photo, 448).shape == (298, 448, 3) and shrink_to_fit(photo, 500) is photo
    assert jpeg_data_url(strip, 320).startswith("data:image/jpeg;base64,")
