"""Training pipeline shared by every trainable model plugin.

Photos are decoded once (:mod:`xconv.image_folders`, so the training and inference paths see identical
pixels), kept in memory as uint8, and streamed through tf.data with augmentation layers that run only on
the training split. Callbacks (:mod:`xconv.training_log`) keep the best checkpoint by validation
accuracy, log CSV history and redraw the learning curves after every epoch; early stopping is Keras's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xconv.errors import XconvError
from xconv.image_folders import (ImageFolder, class_folders, empty_classes, image_folder_files,
                                 read_image_folder, split_validation)
from xconv.training_log import (BestCheckpoint, EpochTimer, LearningCurves, RichProgress, best_epoch,
                                completed_epochs, read_history, truncate_history)


#: Which checkpoint a run keeps: the best by val_accuracy (with early stopping) or the last epoch's.
KEEPS = ("best", "last")


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    patience: int = 15
    augment: bool = True
    seed: int = 1337
    learning_rate: float = 1.5e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: int = 3
    strategy: str = "default"  # or "mirrored" (xconv.distribute)
    scale_learning_rate: bool = True  # with several replicas: learning rate x replicas
    mixing: str = "none"  # or "cutmix", "mixup" (xconv.mixing)
    mixing_probability: float = 0.5  # share of training batches mixed
    small_size: int | None = None  # progressive resizing: the first small_epochs at this square size
    small_epochs: int = 0
    keep: str = "best"  # "best" checkpoint by val_accuracy with early stopping, or the "last" epoch's
    merge_validation: float = 0.0  # share of each validation class moved into training (the rest held out)

    def __post_init__(self):
        """Bad settings fail here, in one line, before any photo is decoded."""
        from xconv.mixing import MIXINGS

        if self.mixing not in MIXINGS:
            raise XconvError(f"unknown --mixing {self.mixing!r}; choose from: {', '.join(MIXINGS)}")
        if self.keep not in KEEPS:
            raise XconvError(f"--keep must be {' or '.join(KEEPS)}, got {self.keep!r}")
        if (self.small_size is None) != (self.small_epochs == 0):
            raise XconvError("progressive resizing needs both --small-size and --small-epochs")
        from xconv.distribute import check_strategy

        check_strategy(self.strategy)

    def phases(self) -> list[tuple[int | None, int, int]]:
        """(square size or None for the full size, first epoch, end epoch) of each training phase."""
        if not self.small_size or not self.small_epochs:
            return [(None, 0, self.epochs)]
        small_end = min(self.small_epochs, self.epochs)
        return [(self.small_size, 0, small_end)] + ([(None, small_end, self.epochs)] if small_end < self.epochs else [])


def check_splits(data: Path, train_split: ImageFolder, validation_split: ImageFolder, echo) -> None:
    """A class with no training photo would be a class the model never sees: refused. Validation gaps only
    make its accuracy partial, so they are said, not refused."""
    empty = empty_classes(train_split)
    if empty:
        raise XconvError(f"{data / 'train'}: no readable images for classes {empty}; every class needs "
                         "training photos (remove the folder to train without that class)")
    for name in empty_classes(validation_split):
        echo(f"warning: {data / 'validation' / name} holds no readable images: validation accuracy leaves "
             f"class {name!r} out")
    for name in sorted(set(class_folders(data / "validation")) - set(train_split.class_names)):
        echo(f"warning: {data / 'validation' / name} is not a training class: left out")


def default_training_size(model_cls, checkpoint: Path, resume: bool) -> tuple[int, int]:
    """The size when ``--image-size`` is not given: a resumed run's own (from its checkpoint), else the model's."""
    if resume:
        from xconv.modelfile import read_metadata

        trained_at = read_metadata(checkpoint).get("image_size")
        if trained_at:
            return int(trained_at[0]), int(trained_at[1])
    return tuple(model_cls.default_image_size)


def check_resume(checkpoint: Path, class_names: list[str], image_size: tuple[int, int]) -> None:
    """Continuing a checkpoint on other classes would relabel its outputs, at another size fail in Keras:
    both refused before anything is read or changed."""
    from xconv.modelfile import read_metadata

    if not checkpoint.is_file():
        raise XconvError(f"--resume: no checkpoint at {checkpoint} to continue from")
    metadata = read_metadata(checkpoint)
    trained_on = metadata.get("class_names")
    if trained_on and list(trained_on) != list(class_names):
        raise XconvError(f"--resume: {checkpoint} was trained on classes {list(trained_on)}, the data holds "
                         f"{list(class_names)}; train a new model (another --out) for other classes")
    trained_at = metadata.get("image_size")
    if trained_at and tuple(trained_at) != tuple(image_size):
        raise XconvError(f"--resume: {checkpoint} trains at {trained_at[0]}x{trained_at[1]}, not "
                         f"{image_size[0]}x{image_size[1]}; pass --image-size {trained_at[0]}")


def check_resumed_network(keras_model, checkpoint: Path, classes: int, image_size: tuple[int, int]) -> None:
    """Another network's .keras file at --out (no metadata to tell) is refused before training, not met as
    a shape error in the first training step."""
    from xconv.layers import output_classes

    shape = tuple(keras_model.inputs[0].shape[1:])
    takes = len(shape) == 3 and shape[-1] == 3 and all(side in (None, size) for side, size in zip(shape, image_size))
    outputs = output_classes(keras_model)
    if not takes or outputs != classes:
        raise XconvError(f"--resume: {checkpoint} is not a checkpoint of this training: it takes inputs of shape "
                         f"{shape} and gives {outputs} outputs, not {image_size[0]}x{image_size[1]}x3 photos and "
                         f"{classes} classes")


def augmentation(seed: int = 1337):
    """Random flips, rotations, zooms, shifts and contrast; Keras layers, active only when training=True."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.08, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.3, 0.1), fill_mode="reflect", seed=seed + 2),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
            layers.RandomContrast(0.2, seed=seed + 4),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 5),
        ],
        name="augmentation",
    )


def make_dataset(folder: ImageFolder, batch_size: int, training: bool, augment: bool, seed: int,
                 size: int | None = None, mixing: str = "none", mixing_probability: float = 0.0,
                 any_size: bool = False):
    """tf.data over the in-memory arrays: shuffled, augmented and optionally mixed (CutMix/MixUp) for
    training, resized to ``size`` (progressive resizing), prefetching always. ``any_size``: batches
    declare no height and width, so one traced training step serves every phase of progressive resizing
    (Keras traces again for an iterator of another shape; about 5-8 s per trace on 2 cores)."""
    import tensorflow as tf

    from xconv.mixing import with_mixing

    num_classes = len(folder.class_names)
    data = tf.data.Dataset.from_tensor_slices((folder.images, folder.labels))
    if training:
        data = data.shuffle(len(folder.labels), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    one_hot = lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes))  # noqa: E731
    data = data.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        augmenter = augmentation(seed)
        data = data.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    if size is not None and tuple(folder.images.shape[1:3]) != (size, size):
        shrink = lambda x, y: (tf.image.resize(x, (size, size), antialias=True), y)  # noqa: E731
        data = data.map(shrink, num_parallel_calls=tf.data.AUTOTUNE)
    if training and mixing != "none":
        data = with_mixing(data, mixing, mixing_probability, seed)
    if any_size:
        channels = folder.images.shape[-1]
        relax = lambda x, y: (tf.compat.v1.placeholder_with_default(x, [None, None, None, channels]), y)  # noqa: E731
        data = data.map(relax)
    return data.prefetch(tf.data.AUTOTUNE)


def compile_for_training(model, config: TrainConfig, steps_per_epoch: int, learning_rate: float | None = None,
                         epochs: int | None = None):
    """AdamW with linear warm-up then cosine decay over the ``epochs`` this optimizer will run (default: all
    of ``config.epochs``; fewer for fine-tuning, which starts a new optimizer after the first run),
    label-smoothed cross-entropy on softmax outputs."""
    import keras

    rate = learning_rate if learning_rate is not None else config.learning_rate
    total = max(1, (config.epochs if epochs is None else epochs) * steps_per_epoch)
    warmup = min(total - 1, config.warmup_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=rate / 10 if warmup else rate,
        decay_steps=total - warmup,
        warmup_target=rate if warmup else None,
        warmup_steps=warmup,
        alpha=0.01,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    # State made here, not inside the first traced step: a variable created while tracing makes TensorFlow
    # trace the whole training step a second time (about 5 s of a short run on 2 cores).
    model.optimizer.build(model.trainable_variables)


def file_stamps(paths: dict[str, Path]) -> dict[str, tuple | None]:
    """Each file's (modification time, size, inode), None where it does not exist: what a run changed."""
    stamps = {}
    for key, path in paths.items():
        try:
            status = path.stat()
            stamps[key] = (status.st_mtime_ns, status.st_size, status.st_ino)
        except OSError:
            stamps[key] = None
    return stamps


def artifact_paths(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {
        "checkpoint": out,
        "history": stem.with_name(stem.name + ".history.csv"),
        "curves": stem.with_name(stem.name + ".curves.png"),
    }


def fit(model, train: ImageFolder, validation: ImageFolder, out: str | os.PathLike, config: TrainConfig,
        initial_epoch: int = 0, progress=None, fresh_optimizer: bool = True, extra_callbacks=(),
        distribution=None, resumed: bool = False, echo=None) -> dict:
    """Train ``model`` and keep the best checkpoint at ``out``; Ctrl-C stops cleanly with that checkpoint kept.
    ``resumed``: ``model`` is the checkpoint at ``out``, so with no history to say how good it is, its
    validation accuracy is measured first (``echo`` says it).

    Returns a summary: best validation accuracy, epochs run, seconds per epoch, images per second,
    whether training was interrupted, and the artifact paths.
    """
    import keras

    from xconv.distribute import make_distribution
    from xconv.weight_decay import decay_at_one_rate

    keras.utils.set_random_seed(config.seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = artifact_paths(out)
    distribution = distribution or make_distribution(config.strategy)  # the one the model was built under
    batch_size = distribution.global_batch(config.batch_size)
    val_data = make_dataset(validation, batch_size, False, False, config.seed)
    steps = int(np.ceil(len(train.labels) / batch_size))
    if fresh_optimizer:
        with distribution.strategy.scope():
            compile_for_training(model, config, steps,
                                 distribution.learning_rate(config.learning_rate, config.scale_learning_rate),
                                 epochs=max(1, config.epochs - initial_epoch))
    decay_at_one_rate(model.optimizer)  # a resumed checkpoint's optimizer too
    timer = EpochTimer()
    keep_best = config.keep == "best"
    # One checkpoint callback for every phase, so "best" compares across them; a run that continues one
    # (--resume, fine-tuning) must beat the best epoch already on disk before it may replace that file.
    earlier = [row["val_accuracy"] for row in read_history(paths["history"])[:initial_epoch] if "val_accuracy" in row]
    measured = []  # the resumed checkpoint's val_accuracy, when no history row has it
    if resumed and keep_best and not earlier:
        # The history is missing or unreadable: without a bar, the first epoch, however bad, replaced the
        # checkpoint (a trained model was lost that way).
        earlier = measured = [float(model.evaluate(val_data, verbose=0, return_dict=True)["accuracy"])]
        if echo:
            echo(f"no history beside {out.name}: its val_accuracy, measured now, is {earlier[0]:.4f}; only a "
                 "better epoch replaces it")
    checkpoint = BestCheckpoint(paths["checkpoint"], keep_best, max(earlier) if earlier else None)
    interrupted = False
    phases = [phase for phase in config.phases() if phase[2] > initial_epoch]
    finishing = [callback for callback in extra_callbacks if hasattr(callback, "finish")]
    for callback in finishing:  # their end-of-run work (a GIF, a confusion matrix) once, after the last phase
        callback.defer_finish = len(phases) > 1
    for index, (size, first, end) in enumerate(phases):
        first = max(first, initial_epoch)
        train_data = make_dataset(train, batch_size, True, config.augment, config.seed, size, config.mixing,
                                  config.mixing_probability, any_size=len(phases) > 1)
        callbacks = [checkpoint, keras.callbacks.CSVLogger(str(paths["history"]), append=first > 0),
                     LearningCurves(paths["history"], paths["curves"]), timer]
        # Early stopping watches the last, full-size phase only, and its patience counts epochs without
        # beating the best already on disk (an earlier phase's, a resumed run's); the checkpoint then
        # restores the file's weights. "last" never lets validation choose: the held-out photos stay untouched.
        if keep_best and index == len(phases) - 1:
            callbacks.insert(1, keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                              patience=config.patience, baseline=checkpoint.best))
            checkpoint.restore_at_end = True
        if progress is not None:
            callbacks.append(progress)
        callbacks.extend(extra_callbacks)
        try:
            model.fit(train_data, validation_data=val_data, epochs=end, initial_epoch=first,
                      callbacks=callbacks, verbose=0, shuffle=False)  # tf.data shuffles already
        except KeyboardInterrupt:
            interrupted = True
        if interrupted or model.stop_training:
            break
    for callback in finishing:
        if callback.defer_finish or interrupted:  # an interrupted fit never reached on_train_end
            callback.finish()
    history = read_history(paths["history"])
    if not history and paths["history"].is_file() and paths["history"].stat().st_size == 0:
        paths["history"].unlink()  # Keras's logger opened it; no epoch ended to fill it
    best = max([*measured, *(row["val_accuracy"] for row in history)], default=float("nan"))
    last = history[-1]["val_accuracy"] if history else float("nan")
    seconds = float(np.median(timer.durations)) if timer.durations else float("nan")
    return {
        "best_val_accuracy": best,
        "last_val_accuracy": last,
        "kept": config.keep,
        "epochs_run": len(history),
        "seconds_per_epoch": seconds,
        "train_images_per_second": len(train.labels) / seconds if timer.durations else float("nan"),
        "interrupted": interrupted,
        "replicas": distribution.replicas,
        "global_batch_size": batch_size,
        "skipped": [str(e) for e in train.skipped + validation.skipped],
        **{name: str(path) for name, path in paths.items()},
    }


def recalibrate_batch_norms(keras_model, images, batch_size: int = 32) -> int:
    """Replace each trainable batch norm's moving statistics by their average over ``images``; returns the count.

    Why: the moving averages kept during training describe augmented batches (zoomed, contrast-shifted)
    at the training size, while the deployed model sees clean photos, perhaps at another size (FixRes).
    Feed the clean training images at the deployed size. The statistics are the image-weighted mean of
    the per-batch means and variances (as PyTorch's ``update_bn``); no weight changes. The model runs in
    training mode, which in Keras overrides a ``training=False`` inside the graph: only norms with
    ``trainable=False`` (frozen, also through a frozen parent) keep their own statistics. A dropout
    placed before a batch norm would skew its statistics.
    """
    import keras

    from xconv.layers import iter_layers

    norms = [info.layer for info in iter_layers(keras_model)
             if isinstance(info.layer, keras.layers.BatchNormalization) and info.layer.trainable]
    if not norms:
        return 0
    momenta = [norm.momentum for norm in norms]
    seen = 0
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            for norm in norms:
                # A running mean weighted by images; the first batch replaces the old statistics.
                norm.momentum = seen / (seen + len(batch))
            keras_model(keras.ops.convert_to_tensor(batch, "float32"), training=True)
            seen += len(batch)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return len(norms)


def unfreeze_top(keras_model, count: int) -> int:
    """Make the top ``count`` layers of the nested base trainable (batch norm stays frozen); returns how many."""
    import keras

    bases = [layer for layer in keras_model.layers if isinstance(layer, keras.Model)]
    if not bases:
        raise XconvError("--fine-tune needs a model with a nested base (such as inceptionv3-transfer)")
    base = bases[0]
    base.trainable = True
    layers = base.layers
    for index, layer in enumerate(layers):
        top = index >= len(layers) - count
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in layers if layer.trainable)


def check_small_size(keras_model, size: int, name: str) -> None:
    """One forward pass at the progressive-resizing size, so a size the net cannot take is one clear line."""
    try:
        keras_model(np.zeros((1, size, size, 3), np.float32), training=False)
    except Exception as error:  # noqa: BLE001 - any failure here means the size does not fit the net
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise XconvError(f"--small-size {size} is too small for {name}: {reason}") from None


def train(data: str | os.PathLike, model_cls, out: str | os.PathLike, config: TrainConfig,
          image_size: tuple[int, int], weights=None, resume: bool = False, fine_tune: int = 0,
          echo=print, explain: dict | None = None) -> dict:
    """The whole ``xconv train``: read the folders, build or resume, fit, optionally fine-tune, stamp metadata.

    ``explain``: options of :class:`xconv.callbacks.ExplainCallback` (``images``, ``out_dir``, ``every``,
    ``method``, ``tensorboard_dir``), to explain fixed photos while it trains."""
    from xconv.modelfile import load_keras_file, write_metadata

    data, out = Path(data), Path(out)
    if resume:
        check_resume(out, image_folder_files(data / "train")[1], image_size)
    train_split = read_image_folder(data / "train", image_size)
    validation_split = read_image_folder(data / "validation", image_size, train_split.class_names)
    for error in train_split.skipped + validation_split.skipped:
        echo(f"skipped {error}")
    if config.merge_validation:
        train_split, validation_split = split_validation(train_split, validation_split, config.merge_validation)
        use = "held out" if config.keep == "last" else "left for validation (they choose the checkpoint)"
        echo(f"moved {config.merge_validation:.0%} of the validation photos into training; "
             f"{len(validation_split.labels)} {use}")
    check_splits(data, train_split, validation_split, echo)  # after the move, which may fill a class
    echo(f"{len(train_split.labels)} training and {len(validation_split.labels)} validation images, "
         f"classes {train_split.class_names}, size {image_size[0]}x{image_size[1]}")
    phases = config.phases()
    progressive = phases[0][0] is not None  # the small size comes first
    if progressive:
        rest = f", then {image_size[0]}x{image_size[1]}" if len(phases) > 1 else ""
        echo(f"progressive resizing: epochs 1-{phases[0][2]} at {config.small_size}x{config.small_size}{rest}")
    paths = artifact_paths(out)
    initial_epoch = 0
    from xconv.distribute import make_distribution

    distribution = make_distribution(config.strategy)
    if config.strategy != "default":  # said even for one replica, so a run on too few devices is noticed
        echo(f"{config.strategy}: {distribution.replicas} replicas, global batch "
             f"{distribution.global_batch(config.batch_size)}, learning rate "
             f"{distribution.learning_rate(config.learning_rate, config.scale_learning_rate):g}")
    with distribution.strategy.scope():  # the model's variables are mirrored on every replica
        if resume:
            keras_model = load_keras_file(out, safe_mode=True, compile=True)
            check_resumed_network(keras_model, out, len(train_split.class_names), image_size)
            initial_epoch = completed_epochs(paths["history"])
            has_optimizer = getattr(keras_model, "compiled", False)
            if has_optimizer and config.keep == "best":
                # The file holds the best epoch, not the last (the first epoch that reached the best
                # val_accuracy: later ties do not replace it): continue from there, so the epoch count and the
                # weights agree; later epochs' weights are gone, so are their rows.
                initial_epoch = best_epoch(paths["history"]) or initial_epoch
                truncate_history(paths["history"], initial_epoch)
            echo(f"resuming from {out} after {initial_epoch} epochs")
            if not has_optimizer:
                # A finished progressive run is re-saved at its training size without optimizer state.
                echo("the checkpoint has no optimizer state (a finished run): continuing with a fresh optimizer")
        else:
            # Progressive resizing trains one net on several sizes: its input takes any size until the end.
            build_size = (None, None) if progressive else image_size
            keras_model = model_cls.build_for_training(train_split.class_names, build_size, weights)
            has_optimizer = False
    if progressive and not resume:
        check_small_size(keras_model, config.small_size, model_cls.name)
    steps = int(np.ceil(len(train_split.labels) / distribution.global_batch(config.batch_size)))
    progress = RichProgress(config.epochs, steps, echo)
    metadata = {"class_names": train_split.class_names, "name": out.stem, "trained_as": model_cls.name,
                "preprocess": "none",  # every trainable model rescales its own input
                "image_size": list(image_size)}
    extra = []
    if explain:
        from xconv.callbacks import ExplainCallback

        extra.append(ExplainCallback(class_names=train_split.class_names,
                                     validation=(validation_split.images, validation_split.labels),
                                     image_size=image_size, resumed_after=initial_epoch, **explain))
    before = file_stamps(paths)  # an earlier run's files this one may not replace (stopped in its first epoch)
    try:
        summary = fit(keras_model, train_split, validation_split, out, config, initial_epoch, progress,
                      fresh_optimizer=not has_optimizer, extra_callbacks=extra, distribution=distribution,
                      resumed=resume, echo=echo)
        if fine_tune and not summary["interrupted"]:
            unfrozen = unfreeze_top(keras_model, fine_tune)
            echo(f"fine-tuning the top {fine_tune} base layers ({unfrozen} trainable) at a low learning rate")
            tuning = TrainConfig(**{**config.__dict__, "learning_rate": config.learning_rate / 100, "warmup_epochs": 0})
            tuning.epochs = summary["epochs_run"] + max(1, config.epochs // 2)
            summary = fit(keras_model, train_split, validation_split, out, tuning, summary["epochs_run"],
                          RichProgress(tuning.epochs, steps, echo), extra_callbacks=extra, distribution=distribution)
    finally:
        written = [key for key, stamp in file_stamps(paths).items() if stamp is not None and stamp != before[key]]
        if "checkpoint" in written:  # never another run's checkpoint: its classes would be relabelled
            write_metadata(out, metadata)
    summary["written"] = [str(paths[key]) for key in written]
    if progressive and out.is_file() and not summary["interrupted"]:
        # The finished model takes the training size, like any other checkpoint (no optimizer state left:
        # the run is over). An interrupted run keeps its any-size checkpoint, so --resume continues it.
        from xconv.modelfile import export_for_inference

        export_for_inference(out, out, metadata,
                             rebuild=lambda: model_cls.build_for_training(train_split.class_names, image_size, None))
    if extra:
        summary["explanations"] = str(extra[0].out_dir)
    summary["parameters"] = int(keras_model.count_params())
    summary["trainable_parameters"] = int(sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights))
    return summary
