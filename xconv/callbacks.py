"""Explanations while a model trains: watch attention move from the background to the animal.

:class:`ExplainCallback` explains a fixed set of photos every N epochs with any heatmap method, writes a
PNG strip per epoch (the photos side by side, each with its heatmap and the target's probability) and,
when training ends, an animated GIF of the strips. With ``tensorboard_dir`` it also logs the strips,
the epoch's metrics and, at the end, the confusion matrix on the validation images to TensorBoard.

The callback wraps the Keras model being trained in an :class:`xconv.Model` once; the explainer's
compiled function reads the live weights, so an epoch's explanation costs one compiled call on a few
photos, not a re-trace (measured in ``benchmarks/train_callback.py``).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

from xconv.errors import XconvError, XconvWarning, first_line
from xconv.images import ImageError, load_image, resize, save_image
from xconv.training_log import keras_callback_base

STRIP_TILE = 160


def check_heatmap_method(method: str, options: dict) -> None:
    """An unknown method, one that draws no heatmaps, or a wrong option: found before the first epoch, not
    after it."""
    from xconv.api import heatmap_method
    from xconv.options import resolve_options

    resolve_options(heatmap_method(method, "explaining while training needs a heatmap method, e.g. gradcam"),
                    options)


class ExplainCallback(keras_callback_base()):
    """Keras callback: ``method`` heatmaps of ``images`` every ``every`` epochs, as strips, a GIF and
    optionally TensorBoard images.

    ``images``: paths, or uint8 (N, H, W, 3) at the model's input size. ``class_names``: the model's
    classes, in output order. ``target``: a class name/index per photo (or one for all); default: the
    predicted class at each epoch. ``validation``: (uint8 images, labels) for the final confusion matrix.
    ``image_size``: the size to explain at when the model takes any size (progressive resizing).
    """

    def __init__(self, images, out_dir, class_names, method: str = "gradcam", every: int = 1, target=None,
                 layer=None, tensorboard_dir=None, validation=None, gif: bool = True, image_size=None,
                 resumed_after: int = 0, **method_options):
        super().__init__()
        check_heatmap_method(method, method_options)
        self.sources, self.photos, kept = self._read(images)
        if isinstance(target, (list, tuple)) and len(target) == len(images):
            target = [target[index] for index in kept]  # the targets of the photos that could be read
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self.method, self.every, self.target, self.layer = method, max(1, int(every)), target, layer
        self.method_options = method_options
        self.tensorboard_dir = None if tensorboard_dir is None else Path(tensorboard_dir)
        self.validation, self.gif = validation, gif
        self.image_size = None if image_size is None else tuple(image_size)
        self.resumed_after = resumed_after  # epochs an earlier run did (xconv train --resume): their strips count
        self.strips: list[Path] = []
        self.seconds: list[float] = []
        self._wrapped = self._writer = None
        self.defer_finish = False
        self._last_epoch = 0

    @staticmethod
    def _read(images):
        """Names, photos and the indices of the photos read; an unreadable file is left out with a warning
        (a run of many epochs is not refused for one of several photos), and none readable is an error."""
        if isinstance(images, np.ndarray):
            return [f"image {i}" for i in range(len(images))], list(images), list(range(len(images)))
        names, photos, kept, unreadable = [], [], [], []
        for index, path in enumerate(map(Path, images)):
            try:
                photos.append(load_image(path))
                names.append(path.name)
                kept.append(index)
            except ImageError as error:
                unreadable.append(first_line(error))
        if unreadable and not photos:
            raise XconvError(f"no photo to explain while training: {'; '.join(unreadable)}")
        if unreadable:
            warnings.warn(f"explaining while training without {'; '.join(unreadable)}", XconvWarning, stacklevel=3)
        return names, photos, kept

    def wrapped_model(self):
        """The training model as an xconv.Model, built once so its compiled functions are traced once; each
        strip refolds its batch-norm-folded copies first, or they would keep the first strip's weights."""
        if self._wrapped is None:
            from xconv.interfaces import Model

            self._wrapped = Model(self.model, self.class_names, display_name=getattr(self.model, "name", "model"),
                                  image_size=self.image_size)
        return self._wrapped

    def on_train_begin(self, logs=None):
        self.check_settings()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.tensorboard_dir is not None and self._writer is None:  # one writer over several fit calls
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(self.tensorboard_dir / "xconv"))

    def check_settings(self) -> None:
        """A wrong target, a target list of the wrong length or a wrong layer: found before the first epoch
        (they need the model, which the callback meets here), not after it."""
        from xconv.api import heatmap_method, resolve_targets
        from xconv.layers import spatial_layer

        model = self.wrapped_model()
        resolve_targets(model, self.target, len(self.photos))
        if self.layer is not None:
            if not heatmap_method(self.method, "").takes_layer:
                raise XconvError(f"method {self.method!r} works on the input itself; it takes no layer")
            layers = list(self.layer) if isinstance(self.layer, (list, tuple)) else [self.layer]
            if len(layers) != 1:  # as xconv.explain says it, which takes a list of one
                raise XconvError(f"method {self.method!r} explains one layer at a time; got {len(layers)}")
            spatial_layer(model.keras_model, model.layer_path(layers[0]), self.method)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch + 1
        if (epoch + 1) % self.every:
            self._log_scalars(epoch, logs)
            return
        started = time.perf_counter()
        strip = self.explain_strip(epoch + 1)
        path = save_image(self.out_dir / f"epoch_{epoch + 1:03d}.png", strip)
        self.strips.append(path)
        self._log_scalars(epoch, logs)
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default():
                tf.summary.image(f"{self.method} heatmaps", strip[None], step=epoch + 1)
        self.seconds.append(time.perf_counter() - started)

    def explain_strip(self, epoch: int) -> np.ndarray:
        """The photos side by side, each overlaid with its heatmap, captioned with class and probability."""
        import xconv

        model = self.wrapped_model()
        model.weights_changed()  # the folded copies the compiled steps call: this epoch's weights
        batch = np.stack([resize(photo, model.input_size) for photo in self.photos])
        targets = None if self.target is None else (self.target if isinstance(self.target, (list, tuple))
                                                    else [self.target] * len(batch))
        explanation = xconv.explain(model, batch, self.method, target=targets, layer=self.layer,
                                    **self.method_options)
        probabilities = model.predict(batch)
        tiles = []
        for index, (photo, heatmap) in enumerate(zip(self.photos, explanation.heatmaps)):
            small = resize(photo, (STRIP_TILE, STRIP_TILE))  # square, as the model saw it: the map fits it
            overlay = xconv.overlay_heatmap(small, heatmap)
            target = explanation.targets[index]
            caption = f"{self.class_names[target]} {probabilities[index, target]:.2f}"
            tiles.append(captioned(overlay, caption))
        strip = xconv.tile(np.stack(tiles), len(tiles), 4)
        return captioned(strip, f"epoch {epoch}  {self.method}", top=True)

    def _log_scalars(self, epoch, logs):
        if self._writer is None or not logs:
            return
        import tensorflow as tf

        with self._writer.as_default():
            for name, value in logs.items():
                tf.summary.scalar(name, float(value), step=epoch + 1)

    def on_train_end(self, logs=None):
        if not self.defer_finish:
            self.finish()

    def finish(self):
        """The end-of-run work: the GIF and the confusion matrix. ``xconv train`` defers it to after its
        last phase when it calls ``fit`` once per phase (``defer_finish``)."""
        if self.gif and self.strips:
            write_gif(self.gif_frames(), self.out_dir / "attention.gif")
        if self._writer is not None:
            if self.validation is not None:
                self._log_confusion()
            self._writer.close()  # its event file complete; a later fit (fine-tuning) opens a new writer
            self._writer = None

    def gif_frames(self) -> list[Path]:
        """This run's strips, after those of the epochs the run it resumed did (``resumed_after``, in the
        same folder): the GIF shows the whole training, not its tail. A fresh run shows only its own."""
        earlier = [p for p in self.out_dir.glob("epoch_*.png") if 0 < (epoch_number(p) or 0) <= self.resumed_after]
        return sorted(earlier, key=epoch_number) + self.strips

    def _log_confusion(self):
        import tempfile

        import tensorflow as tf

        from xconv.evaluation import Evaluation, plot_confusion, predict_batches

        images, labels = self.validation
        labels = np.asarray(labels)
        labels = labels.argmax(axis=1) if labels.ndim == 2 else labels  # one-hot or class indices
        model = self.wrapped_model()
        model.weights_changed()  # early stopping restored the best epoch's weights with set_weights: refold
        predicted = predict_batches(model, np.asarray(images), 32, flip_average=False).argmax(axis=1)
        confusion = np.zeros((len(self.class_names),) * 2, np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        with tempfile.TemporaryDirectory() as scratch:
            png = plot_confusion(Evaluation(self.class_names, confusion, [], [], len(labels)),
                                 os.path.join(scratch, "confusion.png"))
            picture = load_image(png)
        with self._writer.as_default():
            tf.summary.image("confusion matrix (validation)", picture[None], step=self._last_epoch)


def captioned(picture: np.ndarray, text: str, top: bool = False) -> np.ndarray:
    """A white band with ``text`` under (or above) the picture."""
    from xconv.text import put_text

    band = np.full((20, picture.shape[1], 3), 255, np.uint8)
    put_text(band, text, 4, 15, 13)
    return np.concatenate([band, picture] if top else [picture, band])


def epoch_number(strip: Path) -> int | None:
    digits = strip.stem.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else None


def write_gif(strips: list[Path], path: Path, seconds_per_frame: float = 0.8) -> Path:
    from PIL import Image

    frames = []
    for strip in strips:
        with Image.open(strip) as image:
            frames.append(image.convert("RGB"))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(seconds_per_frame * 1000), loop=0)
    return path
