"""Labelled photo folders (``<folder>/<class>/*``) decoded to memory, and the validation split's move.

Training, evaluation and the docs' held-out tables read photos the same way, through
:mod:`xconv.images`, so the training and inference paths see identical pixels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xconv.errors import XconvError
from xconv.images import IMAGE_SUFFIXES, ImageError, load_image, resize


@dataclass
class ImageFolder:
    """One split (train or validation) decoded to memory."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int32 (N,)
    class_names: list[str]
    skipped: list[ImageError] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # the decoded files, in the order of ``images``


def class_folders(directory: Path) -> list[str]:
    """The class folders' names, sorted; hidden folders (.ipynb_checkpoints, say) are not classes."""
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_folder_files(directory: str | os.PathLike, class_names=None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``directory/<class>/*`` image files with their class's index in ``class_names`` (default: every class
    folder, sorted), and the class names; one readable error when the layout is not that."""
    directory = Path(directory)
    if not directory.is_dir():
        problem = "no such folder" if not directory.parent.is_file() else f"{directory.parent} is a file, not a folder"
        raise XconvError(f"{directory}: {problem} (expected <data>/train/<class>/ and <data>/validation/<class>/)")
    found = class_folders(directory)
    class_names = list(class_names) if class_names else found
    if len(class_names) < 2:
        raise XconvError(f"{directory}: needs at least two class folders, found {found or 'none'}")
    missing = [name for name in class_names if name not in found]
    if missing:
        raise XconvError(f"{directory}: class folders {missing} are missing (found {found})")
    files = [
        (path, label)
        for label, name in enumerate(class_names)
        for path in sorted((directory / name).iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return files, class_names


def read_image_folder(directory: str | os.PathLike, image_size: tuple[int, int], class_names=None) -> ImageFolder:
    """Decode ``directory/<class>/*`` at ``image_size``; unreadable files are skipped and listed, not fatal."""
    directory = Path(directory)
    files, class_names = image_folder_files(directory, class_names)

    def decode(item):
        path, label = item
        try:
            return resize(load_image(path), image_size), label, None
        except ImageError as error:
            return None, label, error

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(decode, files))
    good = [(image, label, path) for (image, label, error), (path, _) in zip(results, files) if error is None]
    skipped = [error for _, _, error in results if error is not None]
    if not good:
        raise XconvError(f"{directory}: no readable images")
    images = np.stack([image for image, _, _ in good])
    labels = np.array([label for _, label, _ in good], dtype=np.int32)
    return ImageFolder(images, labels, class_names, skipped, [path for _, _, path in good])


def empty_classes(folder: ImageFolder) -> list[str]:
    """The classes of ``folder`` with no readable image (an empty folder, or only broken files)."""
    counts = np.bincount(folder.labels, minlength=len(folder.class_names))
    return [name for name, count in zip(folder.class_names, counts) if count == 0]


def moved_to_training(labels: np.ndarray, share: float) -> np.ndarray:
    """Which validation photos (in file order, by class label) ``split_validation`` moves into training:
    ``share`` of each class, evenly spread (0.5: the odd ranks), so the rest is a fixed held-out set."""
    if not 0 <= share < 1:
        raise XconvError(f"--merge-validation must be at least 0 and below 1, got {share}")
    labels = np.asarray(labels)
    moved = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = np.arange(len(members))
        moved[members[np.floor((ranks + 1) * share) > np.floor(ranks * share)]] = True
    return moved


def split_validation(train: ImageFolder, validation: ImageFolder, share: float) -> tuple[ImageFolder, ImageFolder]:
    """Move ``share`` of each validation class into training, evenly spread over its sorted files.

    Why: more training photos are the surest accuracy gain on a small set, and the photos left in
    validation stay untouched when the run keeps its last epoch, so they still give an honest estimate.
    The choice depends only on file order, so a re-run moves the same photos."""
    moved = moved_to_training(validation.labels, share)

    def paths_where(mask):
        return [path for path, chosen in zip(validation.paths, mask) if chosen]

    merged = ImageFolder(np.concatenate([train.images, validation.images[moved]]),
                         np.concatenate([train.labels, validation.labels[moved]]), train.class_names,
                         train.skipped, list(train.paths) + paths_where(moved))
    held_out = ImageFolder(validation.images[~moved], validation.labels[~moved], validation.class_names,
                           validation.skipped, paths_where(~moved))
    return merged, held_out
