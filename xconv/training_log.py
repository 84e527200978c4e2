"""A training run's record: its CSV history, the learning-curves picture, and the Keras callbacks that
keep them, the checkpoint and the progress line up to date after every epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def completed_epochs(history_csv: Path) -> int:
    """How many epochs an earlier run logged, so --resume continues the epoch count and the schedule."""
    if not history_csv.exists():
        return 0
    with history_csv.open() as handle:
        return sum(1 for _ in csv.DictReader(handle))


def best_epoch(history_csv: Path) -> int:
    """Epochs up to and including the first one with the best val_accuracy (0 without a history)."""
    scores = [row.get("val_accuracy", float("-inf")) for row in read_history(history_csv)]
    return int(np.argmax(scores)) + 1 if scores else 0


def truncate_history(history_csv: Path, epochs: int) -> None:
    """Keep the first ``epochs`` rows of the history: a resumed run logs the later epochs again."""
    if not history_csv.exists():
        return
    lines = history_csv.read_text().splitlines(keepends=True)
    history_csv.write_text("".join(lines[:1 + epochs]))


def read_history(history_csv: Path) -> list[dict[str, float]]:
    if not Path(history_csv).exists():
        return []
    with Path(history_csv).open() as handle:
        return [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]


def plot_learning_curves(history_csv: Path, png: Path) -> Path:
    """Training vs validation accuracy and loss, side by side, as in Chollet's book."""
    # A bare Figure draws with the Agg canvas without pyplot, so the user's matplotlib backend is left alone.
    from matplotlib.figure import Figure

    rows = read_history(history_csv)
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("accuracy", "loss")):
        axis.plot(epochs, [row[metric] for row in rows], "o-", markersize=3, label=f"training {metric}")
        axis.plot(epochs, [row[f"val_{metric}"] for row in rows], "s-", markersize=3, label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    return png


def keras_callback_base():
    import keras

    return keras.callbacks.Callback


class LearningCurves(keras_callback_base()):
    """Redraws the curves PNG after each epoch, so an interrupted run still has them."""

    def __init__(self, history_csv: Path, png: Path):
        super().__init__()
        self.history_csv, self.png = Path(history_csv), Path(png)

    def on_epoch_end(self, epoch, logs=None):
        # CSVLogger writes its row in the same hook; it runs first because it is listed first.
        if self.history_csv.exists():
            plot_learning_curves(self.history_csv, self.png)


class BestCheckpoint(keras_callback_base()):
    """The model saved after each epoch that beats ``best`` val_accuracy (after every epoch when not
    ``keep_best``), through a temporary file renamed over the checkpoint: Keras's ModelCheckpoint writes
    the checkpoint itself, so a Ctrl-C during a save left a truncated file where the last good one was."""

    def __init__(self, path: Path, keep_best: bool, best: float | None = None):
        super().__init__()
        self.path, self.keep_best, self.best = Path(path), keep_best, best
        self.restore_at_end = False  # set for a run's last phase: the model it leaves is the checkpoint's

    def on_train_end(self, logs=None):
        # Not Keras's restore_best_weights: its best is this fit's, but the file's best may be an epoch of
        # the run this one resumed, or of an earlier phase; what follows (fine-tuning, the final confusion
        # matrix) must start from what the file holds.
        if self.restore_at_end and self.path.is_file():
            self.model.load_weights(self.path)

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy")
        if self.keep_best:
            if score is None or (self.best is not None and not score > self.best):
                return
            self.best = float(score)
        from xconv.modelfile import save_keras_file

        save_keras_file(self.model, self.path)


class EpochTimer(keras_callback_base()):
    """Wall-clock seconds per epoch, training and validation included, for the benchmark."""

    def __init__(self):
        super().__init__()
        self.durations: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time

        self.durations.append(time.perf_counter() - self._start)


class RichProgress(keras_callback_base()):
    """A progress bar over the batches of each epoch on a terminal, and one summary line per epoch."""

    def __init__(self, epochs: int, steps: int, echo=print):
        super().__init__()
        self.epochs, self.steps, self.echo = epochs, steps, echo
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        import sys

        if sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(self.task, completed=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        logs = logs or {}
        self.echo(f"epoch {epoch + 1}/{self.epochs}: accuracy {logs.get('accuracy', float('nan')):.4f} "
                  f"loss {logs.get('loss', float('nan')):.4f} val_accuracy {logs.get('val_accuracy', float('nan')):.4f} "
                  f"val_loss {logs.get('val_loss', float('nan')):.4f}")
