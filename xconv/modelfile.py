"""Saved Keras classifiers given by path, and the xconv metadata stored inside ``.keras`` files.

A ``.keras`` file is a zip archive; xconv adds one member, ``xconv.json``, with the class names and
display name, so a model file alone is enough to predict and explain with readable labels. Keras
ignores members it does not know.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import warnings

from xconv.errors import XconvError, XconvWarning, first_line
from xconv.files import replacing
from xconv.images import MAX_IMAGE_SIDE
from xconv.interfaces import Model
from xconv.layers import output_classes
from xconv.options import Option
from xconv.preprocessing import MODES, check_mode, preprocess

METADATA_MEMBER = "xconv.json"
#: The model files Keras 3 loads: its own archive, and legacy HDF5.
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")

#: Layers that show a model rescales its own input when they come before its first conv or dense layer.
INPUT_PREPROCESSING_LAYERS = ("Rescaling", "Normalization")


class KerasFileModel(Model):
    """Any saved Keras classifier, with the preprocessing it expects (see :mod:`xconv.preprocessing`)."""

    name = "file"
    description = "a saved Keras classifier (.keras) given by path"
    options = (Option("image_size", int, None, "square input size, for a model that takes any size (default: "
                                               "the size xconv train recorded)", minimum=8, maximum=MAX_IMAGE_SIDE),)

    def __init__(self, keras_model, class_names, preprocess_mode: str = "none", **kwargs):
        super().__init__(keras_model, class_names, **kwargs)
        self.preprocess_mode = check_mode(preprocess_mode)

    def preprocess(self, batch):
        return preprocess(batch, self.preprocess_mode)


def read_metadata(path: str | os.PathLike) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER in archive.namelist():
                return json.loads(archive.read(METADATA_MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return {}


def save_keras_file(keras_model, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """keras_model.save, with xconv's metadata stamped in, replacing ``path`` only once both are written."""
    path = Path(path)
    with replacing(path) as temporary:
        keras_model.save(temporary)
        if metadata is not None:
            write_metadata(temporary, metadata)
    return path


def write_metadata(path: str | os.PathLike, metadata: dict) -> None:
    """Add or replace ``xconv.json`` inside a ``.keras`` archive. The other members keep their compression:
    Keras stores the weights uncompressed, and deflating them took 3x as long as the save itself (5 s for
    InceptionV3's 96 MB, at every checkpoint) and 0.8 s more at every load, to save 10 % of the size."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist() if info.filename != METADATA_MEMBER]
    with replacing(path) as temporary:
        with zipfile.ZipFile(temporary, "w") as archive:
            for info, data in members:
                archive.writestr(info, data)
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=1), compress_type=zipfile.ZIP_DEFLATED)


def load_keras_file(path: str | os.PathLike, safe_mode: bool = True, compile: bool = False):
    """keras.models.load_model with one-line errors for the usual mistakes (``compile``: keep the optimizer)."""
    import keras

    path = Path(path)
    if path.is_dir():
        raise XconvError(f"{path} is a folder, not a model file: give a .keras file or a model name (xconv list)")
    if not path.is_file():
        raise XconvError(f"{path}: no such model file")
    if path.suffix.lower() not in MODEL_FILE_SUFFIXES:  # Keras's own words stop mid-sentence at 200 characters
        raise XconvError(f"{path}: not a Keras model file (xconv loads .keras files, and legacy .h5 ones)")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise XconvError(f"{path}: not a Keras model file (a .keras file is a zip archive; this one is "
                         "truncated, corrupt or in another format)")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise XconvError(f"{path}: contains code (a Lambda layer); load it only if you trust it, with --unsafe") from None
        raise XconvError(f"{path}: not a loadable Keras model ({first_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - h5py, zipfile and Keras raise many types for bad files
        raise XconvError(f"{path}: not a loadable Keras model ({first_line(error)})") from None


def load_weights_file(keras_model, path, model_name: str, accepted: str = "a path or 'none'") -> None:
    """Load a weights file into ``keras_model``, turning every failure into one line naming the file
    (``accepted``: what the model's ``--weights`` takes, said when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        raise XconvError(f"weights file {path} does not exist (--weights takes {accepted})")
    if path.suffix == ".h5" and not is_hdf5(path):  # h5py would say "file signature not found"
        raise XconvError(f"weights file {path} is not an HDF5 weights file (truncated, corrupt or another format)")
    try:
        keras_model.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise many types for mismatched files
        # Keras's first line may end in a colon, its example below: the first sentence says it all.
        reason = first_line(error).rstrip(":").rsplit(". Example", 1)[0]
        raise XconvError(f"weights file {path} does not fit {model_name}: {reason} (saved from another "
                         "architecture?)") from None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with HDF5's signature (at offset 0, where Keras's files have it)."""
    with path.open("rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def load_model_file(path: str | os.PathLike, safe_mode: bool = True, preprocess: str | None = None,
                    image_size: int | None = None) -> Model:
    """A saved classifier with its class names and preprocessing: ``preprocess`` if given, else the mode
    recorded in the file's metadata, else ``none`` (said once when the model has no rescaling layer).
    ``image_size``: the square size to feed a model that takes any size, else the one its metadata records."""
    if preprocess is not None:
        check_mode(preprocess)
    keras_model = load_keras_file(path, safe_mode=safe_mode)
    metadata = read_metadata(path)
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise XconvError(f"{path}: xconv explains classifiers with one input and one output; this model has "
                         f"{len(keras_model.inputs)} inputs and {len(keras_model.outputs)} outputs")
    shape = tuple(keras_model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise XconvError(f"{path}: xconv explains image classifiers taking RGB (height, width, 3); this model "
                         f"takes {shape[1:]}")
    if image_size and None not in shape[1:3]:
        raise XconvError(f"{path}: the model takes {shape[1]}x{shape[2]} only; -O image_size is for a model "
                         "that takes any size")
    if image_size:
        metadata["image_size"] = [image_size, image_size]
    elif None in shape[1:3] and not metadata.get("image_size"):
        raise XconvError(f"{path}: the model takes any input size and records none; say which with "
                         "-O image_size=N (e.g. 224)")
    classes = output_classes(keras_model)
    class_names = metadata.get("class_names") or [f"class_{i}" for i in range(classes)]
    if len(class_names) != classes:
        raise XconvError(f"{path}: metadata lists {len(class_names)} classes but the model outputs {classes}")
    mode = preprocess or metadata.get("preprocess") or assumed_preprocessing(keras_model, path)
    return KerasFileModel(keras_model, class_names, preprocess_mode=mode, default_layer=metadata.get("default_layer"),
                          display_name=metadata.get("name") or Path(path).stem, image_size=metadata.get("image_size"))


def assumed_preprocessing(keras_model, path) -> str:
    """'none' for a file that states nothing; a warning unless a rescaling layer shows the model needs none."""
    if not rescales_own_input(keras_model):
        warnings.warn(f"{path} records no preprocessing and has no Rescaling or Normalization layer at its input; "
                      f"assuming it takes pixels 0-255 (--preprocess none); pass --preprocess "
                      f"{'|'.join(m for m in MODES if m != 'none')} if it expects otherwise", XconvWarning,
                      stacklevel=3)
    return "none"


def rescales_own_input(keras_model) -> bool:
    from xconv.layers import iter_layers

    for info in iter_layers(keras_model):
        if info.type in INPUT_PREPROCESSING_LAYERS:
            return True
        if "Conv" in info.type or info.type == "Dense":
            return False
    return False


def export_for_inference(checkpoint: str | os.PathLike, destination: str | os.PathLike, metadata: dict,
                         rebuild=None, finish=None) -> Path:
    """Re-save a training checkpoint without its optimizer state (a third of the size) and stamp metadata.

    ``rebuild()`` may return the same architecture built differently (another input size for a fully
    convolutional net); the checkpoint's weights are copied into it. ``finish(keras_model)`` runs last,
    before saving (recalibrating batch norms for the deployed input, say).
    """
    keras_model = load_keras_file(checkpoint, safe_mode=True)
    if rebuild is not None:
        rebuilt = rebuild()
        rebuilt.set_weights(keras_model.get_weights())
        keras_model = rebuilt
    if finish is not None:
        finish(keras_model)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    return save_keras_file(keras_model, destination, metadata)  # often over the checkpoint it was loaded from
