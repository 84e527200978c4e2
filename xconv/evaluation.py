"""Accuracy, per-class precision and recall, a confusion matrix and the most confidently wrong images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xconv.errors import XconvError
from xconv.interfaces import Model


@dataclass
class Evaluation:
    class_names: list[str]
    confusion: np.ndarray  # (true, predicted) counts
    wrong: list[dict]
    skipped: list[str]
    images: int
    folder: str = ""  # the folder of class folders that was evaluated

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))

    def accuracy_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of the accuracy (95 % by default): how far the true accuracy on photos like
        these may be from this sample's, honest also near 0 or 1 and for small samples."""
        n = max(1, int(self.confusion.sum()))
        p = self.accuracy
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return float(centre - half), float(centre + half)

    def per_class(self) -> dict[str, dict[str, float | None]]:
        """Precision and recall per class; None where undefined (no image of the class, none predicted as
        it), rather than a 0 that reads as a measured failure."""
        true_positive = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(axis=0)
        actual = self.confusion.sum(axis=1)
        return {
            name: {
                "precision": float(true_positive[i] / predicted[i]) if predicted[i] else None,
                "recall": float(true_positive[i] / actual[i]) if actual[i] else None,
                "support": int(actual[i]),
            }
            for i, name in enumerate(self.class_names)
        }

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "accuracy_ci95": list(self.accuracy_interval()), "images": self.images, "per_class": self.per_class(),
                "confusion_matrix": self.confusion.tolist(), "class_names": self.class_names,
                "most_confident_errors": self.wrong, "skipped": self.skipped}


def evaluation_folder(data: str | os.PathLike) -> Path:
    """``DIR/test`` or ``DIR/validation`` if present, else ``DIR`` itself holds the class folders."""
    data = Path(data)
    for split in ("test", "validation"):
        if (data / split).is_dir():
            return data / split
    if not data.is_dir():
        raise XconvError(f"{data}: a file, not a folder of class folders" if data.exists() else f"{data}: no such folder")
    return data


#: Photos decoded at a time: memory stays flat however many photos the folder holds.
CHUNK = 256


def evaluate(model: Model, data: str | os.PathLike, batch_size: int = 32, flip_average: bool = False,
             show_wrong: int = 10) -> Evaluation:
    """Classify every image under ``data/<class>/``; folder names are matched to the model's classes.

    Photos stream through in chunks (decoded ahead in threads while the model runs, each dropped once
    resized), so memory holds a few chunks at model size and the probabilities, not the photos.
    """
    from xconv.images import load_batch
    from xconv.streaming import decoded_ahead
    from xconv.image_folders import image_folder_files

    folder = evaluation_folder(data)
    files, folders = image_folder_files(folder)
    label_of_folder = [model.class_index(name) for name in folders]
    chunks = [files[start:start + CHUNK] for start in range(0, len(files), CHUNK)]
    probabilities, truth, paths, skipped = [], [], [], []

    def decode(chunk):
        return load_batch([path for path, _ in chunk], model.input_size, keep_originals=False)

    for chunk, (batch, _, good, errors) in decoded_ahead(chunks, decode, workers=os.cpu_count() or 2):
        label_of_path = {str(path): label_of_folder[label] for path, label in chunk}
        if len(good):
            probabilities.append(predict_batches(model, batch, batch_size, flip_average))
            truth += [label_of_path[str(path)] for path in good]
            paths += good
        skipped += [str(error) for error in errors]
    if not paths:
        raise XconvError(f"{folder}: no readable images")
    result = summarize(model, np.concatenate(probabilities), np.array(truth), paths, show_wrong, skipped)
    result.folder = str(folder)
    return result


def share_text(value: float | None) -> str:
    """A precision or recall as printed: four decimals, or a dash where it is undefined."""
    return "     -" if value is None else f"{value:.4f}"


def missing_classes_note(evaluation: Evaluation) -> str | None:
    """A warning naming the classes the folder has no readable photo of: their recall is undefined and the
    accuracy says nothing about them."""
    missing = [name for name, row in evaluation.per_class().items() if row["support"] == 0]
    if not missing:
        return None
    return (f"xconv: warning: no readable photo of {', '.join(map(repr, missing))} in {evaluation.folder}: the accuracy "
            "covers the other classes only")


def validation_note(evaluation: Evaluation) -> str | None:
    """A warning when the photos evaluated are the validation split of a training layout: `xconv train`
    chose its checkpoint on them (--keep best, the default) and may have trained on part of them
    (--merge-validation), so the accuracy is optimistic there; a test/ folder gives an unbiased one."""
    folder = Path(evaluation.folder)
    if folder.name != "validation" or not (folder.parent / "train").is_dir():
        return None
    return (f"note: {folder} is the validation split; if this model was trained on this layout it chose its "
            "checkpoint there (and --merge-validation trains on part of it), so this accuracy is optimistic: "
            "evaluate on photos the run never saw (DIR/test/<class>/ is used when present)")


def evaluate_images(model: Model, images: np.ndarray, truth: np.ndarray, paths, batch_size: int = 32,
                    flip_average: bool = False, show_wrong: int = 10, skipped=()) -> Evaluation:
    """The evaluation of decoded images (uint8 at the model's input size) with class indices ``truth``."""
    probabilities = predict_batches(model, images, batch_size, flip_average)
    return summarize(model, probabilities, truth, paths, show_wrong, skipped)


def summarize(model: Model, probabilities: np.ndarray, truth, paths, show_wrong: int = 10, skipped=()) -> Evaluation:
    """Confusion matrix and the most confidently wrong images from (N, classes) probabilities."""
    truth = np.asarray(truth)
    predicted = probabilities.argmax(axis=1)
    classes = len(model.class_names)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    wrong_indices = np.flatnonzero(predicted != truth)
    wrong_indices = wrong_indices[np.argsort(-confidence[wrong_indices])][:show_wrong]
    wrong = [{"path": str(paths[i]), "true": model.class_names[truth[i]],
              "predicted": model.class_names[predicted[i]], "confidence": float(confidence[i])} for i in wrong_indices]
    return Evaluation(model.class_names, confusion, wrong, list(skipped), len(truth))


def predict_batches(model: Model, images: np.ndarray, batch_size: int, flip_average: bool) -> np.ndarray:
    """Probabilities for many images; ``flip_average`` forces mirror averaging on, else the model decides."""
    flip = True if flip_average else None
    return np.concatenate([model.predict(images[start:start + batch_size], flip_average=flip)
                           for start in range(0, len(images), batch_size)])


def plot_confusion(evaluation: Evaluation, png: str | os.PathLike) -> Path:
    # A bare Figure draws with the Agg canvas without pyplot, so the user's matplotlib backend is left alone.
    from matplotlib.figure import Figure

    names = evaluation.class_names
    size = max(4, 0.6 * len(names) + 2)
    figure = Figure(figsize=(size, size))
    axis = figure.subplots()
    axis.imshow(evaluation.confusion, cmap="Blues")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"accuracy {evaluation.accuracy:.3f} on {evaluation.images} images")
    peak = evaluation.confusion.max() or 1
    for (row, column), count in np.ndenumerate(evaluation.confusion):
        axis.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    return Path(png)
