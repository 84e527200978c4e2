"""One ``xconv explain`` job, independent of where it runs: the local streaming engine and the Ray engine
call the same decode, compute and write, so their files and manifest records are the same.

A :class:`JobSpec` is plain data (picklable, sent to Ray workers); :class:`ExplainJob` loads the model
once from it and explains chunks of photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import numpy as np

import xconv


@dataclass
class JobSpec:
    """What to explain with, and where to write: everything but the photos."""

    model: str = "catsdogs"
    weights: object = "default"
    preprocess: str | None = None
    safe_mode: bool = True
    methods: list = field(default_factory=lambda: ["gradcam"])
    targets: list = field(default_factory=lambda: [None])  # class indices or names, None: the predicted class
    layer: object = None
    renderer: str = "overlay"
    routed: dict = field(default_factory=dict)  # -O options by scope: model, method or each method, renderer
    per_method: bool = False  # several methods, each drawn by a heatmap renderer (not compared in one figure)
    out: str = "xconv-out"

    def key(self) -> str:
        """A short fingerprint of everything that decides the files but the output folder: ``--resume``
        redoes inputs recorded under another job (a different method, target, layer or option)."""
        import hashlib
        import json
        from dataclasses import asdict

        settings = {name: value for name, value in asdict(self).items() if name != "out"}
        for name in ("model", "weights"):
            # A model or weights file counts by its contents: retrained in place it is another job, and the
            # same file is the same job however its path is spelled (Ray's workers are given it absolute).
            stamp = file_stamp(settings[name])
            if stamp is not None:
                settings[name] = {"file": stamp}
        return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def load_model(self):
        return xconv.load_model(self.model, weights=self.weights, safe_mode=self.safe_mode,
                                preprocess=self.preprocess, **self.routed.get("model", {}))


def file_stamp(value) -> str | None:
    """A digest of the contents of ``value`` when it names an existing file, else None: the same on every
    machine that holds a copy (Ray workers compute the key too), different once the file is retrained."""
    import hashlib
    import os

    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        return None
    digest = hashlib.sha1()
    with open(value, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ExplainJob:
    def __init__(self, spec: JobSpec, model=None):
        from xconv.registry import get_registry

        self.spec = spec
        self.model = model if model is not None else spec.load_model()
        # Targets as class indices; the spec may name them (the Ray engine's workers resolve names themselves).
        # "-t cat -t 0" name one class twice: explained once, or its files and records come twice.
        self.targets = list(dict.fromkeys(None if t is None else self.model.class_index(t) for t in spec.targets))
        registry = get_registry()
        self.classes = {name: registry.get("explainer", name) for name in spec.methods}

    def key(self) -> str:
        """The job's fingerprint with its targets as class indices, however they were named: the same job
        gets the same key from the local engine and from Ray's workers (``--resume`` matches on it)."""
        return replace(self.spec, targets=self.targets).key()

    def decode(self, paths):
        return xconv.load_images(paths, self.model)

    def explanations(self, batch, target, **where) -> list:
        """One target's explanations of a chunk: one, a comparison, or one per method."""
        spec, methods = self.spec, self.spec.methods
        if len(methods) == 1:
            return [xconv.explain(self.model, batch, method=methods[0], target=target, layer=spec.layer, **where,
                                  **spec.routed.get("method", {}))]
        if not spec.per_method:
            return [xconv.compare(self.model, batch, methods, target=target, layer=spec.layer,
                                  options={name: spec.routed.get(name, {}) for name in methods}, **where)]
        return [xconv.explain(self.model, batch, method=name, target=target, **where, **spec.routed.get(name, {}),
                              layer=spec.layer if self.classes[name].takes_layer else None) for name in methods]

    def compute(self, batch, originals, good, numbers) -> list:
        """Every target's explanations of one decoded chunk; ``numbers`` name the files (see streaming)."""
        return [explanation for target in self.targets
                for explanation in self.explanations(batch, target, originals=originals, sources=good,
                                                     index_offset=numbers)]

    def draw(self, explanation) -> list:
        return xconv.render(explanation, self.spec.renderer, self.spec.out, **self.spec.routed.get("renderer", {}))

    def write(self, explanations, good) -> list[dict]:
        return manifest_records(explanations, good, [self.draw(e) for e in explanations], self.model)


def manifest_records(explanations, good, drawn, model) -> list[dict]:
    """One manifest record per explained input: prediction, top probabilities, targets, layer, files."""
    first = explanations[0]
    records = []
    # A renderer that does not say which input a file shows (a plugin returning plain paths) drew it for
    # the whole chunk: every input of the chunk lists it, so --resume checks that it exists.
    shared = [str(item) for written in drawn for item in written if item.index is None and len(good) > 1]
    for index, path in enumerate(good):
        outputs = [str(item) for written in drawn for item in written
                   if item.index == index or (item.index is None and len(good) == 1)]
        label, score = first.predictions[index] if first.predictions else (None, None)
        record = {"input": str(path), "status": "ok", "prediction": label,
                  "probability": None if score is None else round(float(score), 6)}
        probabilities = first.arrays.get("probabilities")
        if probabilities is not None:
            top = np.argsort(-probabilities[index], kind="stable")[:5]
            record["probabilities"] = {model.class_names[i]: round(float(probabilities[index, i]), 6) for i in top}
        record["targets"] = [e.target_names[index] for e in explanations if e.target_names]
        record["layer"] = first.layer
        record["outputs"] = outputs
        if shared:
            record["shared_outputs"] = shared
        records.append(record)
    return records

