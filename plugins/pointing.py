"""Pointing game (Zhang et al. 2016): does the map's maximum fall on the object?

A hit when the map's highest point (after bilinear upsampling to the photo's original size) lies within
``tolerance`` pixels (Euclidean distance; 15 px as in the paper) of a box of the target class. Boxes
come from ``-O boxes=FILE`` (``xconv score --boxes FILE``), a JSON list or a CSV with one record per image
and class: ``image`` (the file name, or a path: the end of the input's path), ``class`` (name or index), ``x0, y0, x1, y1`` in the
original image's pixels. An image with no box for its target gets NaN (left out of the mean); a map
with no maximum (constant: a Grad-CAM with no positive evidence) points nowhere and misses.

As in the paper, the game is cued by the true class: ``xconv score --boxes`` (``target="annotated"``)
scores each image once per class its boxes give, so an image the model gets wrong still counts (the
predicted class would have no box there, and leaving those images out would flatter every method), and
the summary is the mean over classes of each class's hit rate.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np

import xconv
from xconv.faithfulness import maps_at_input_size


def names_the_image(named: str, source: str) -> bool:
    """Whether a record's ``image`` names the input at ``source``: an absolute path names that file; a file
    name or relative path names every input whose path ends with it, however the input was spelled on the
    command line, so ``cats/1.jpg`` and ``dogs/1.jpg`` stay apart where ``1.jpg`` names both."""
    if Path(named).is_absolute():
        return Path(named) == Path(os.path.abspath(source))
    parts = Path(named).parts
    return bool(parts) and Path(source).parts[-len(parts):] == parts


def read_boxes(path) -> list[dict]:
    """Box records from JSON (a list of objects) or CSV (a header row): image, class, x0, y0, x1, y1."""
    path = Path(path)
    if path.is_dir():
        raise xconv.XconvError(f"boxes file {path} is a folder; give the JSON or CSV file")
    if not path.is_file():
        raise xconv.XconvError(f"boxes file {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            records = json.loads(path.read_text())
        else:
            with open(path, newline="") as handle:
                records = list(csv.DictReader(handle))
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TypeError("a JSON file holds a list of objects, one per box")
        if not records:
            raise ValueError("it holds no record")
        boxes = [{"image": str(r["image"]), "class": str(r["class"]),
                  **{key: float(r[key]) for key in ("x0", "y0", "x1", "y1")}} for r in records]
    except (ValueError, KeyError, TypeError) as error:
        raise xconv.XconvError(f"boxes file {path}: each record needs image, class, x0, y0, x1, y1 "
                               f"({xconv.first_line(error)})") from None
    for number, box in enumerate(boxes, start=1):
        corners = [box[key] for key in ("x0", "y0", "x1", "y1")]
        if not np.isfinite(corners).all() or box["x1"] < box["x0"] or box["y1"] < box["y0"]:
            raise xconv.XconvError(f"boxes file {path}, record {number} ({box['image']}): corners must be numbers "
                                   f"with x0 <= x1 and y0 <= y1, got {', '.join(f'{c:g}' for c in corners)}")
    return boxes


def distance_to_box(x: float, y: float, box) -> float:
    """Euclidean distance from a point to a box (0 inside): Zhang et al.'s tolerance is a radius, so a point
    15 px off a corner diagonally (21 px away) is a miss."""
    x0, y0, x1, y1 = box
    return float(np.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)))


class Pointing(xconv.Metric):
    name = "pointing"
    description = "1 when the map's maximum falls in a box of the target class (Zhang et al. 2016)"
    averaged_over = "classes"
    options = (
        xconv.Option("boxes", str, None, "JSON or CSV file of boxes (image, class, x0, y0, x1, y1)"),
        xconv.Option("tolerance", float, 15.0, "largest distance in pixels from the box, at the original resolution",
                     minimum=0),
    )

    def __init__(self, model, **options):
        super().__init__(model, **options)
        if not self.boxes:
            raise xconv.XconvError("pointing needs boxes: xconv score --boxes FILE (or -O pointing.boxes=FILE)")
        self.records, foreign = [], {}
        for record in read_boxes(self.boxes):
            try:
                record["target"] = self.model.class_index(record["class"])
                self.records.append(record)
            except xconv.XconvError as error:
                foreign.setdefault(record["class"], xconv.first_line(error))
        # Annotation files box every object (a person beside the dog): those records are left out, said
        # once; a file none of whose classes the model has (a misspelling) could only ever miss.
        if foreign and not self.records:
            raise xconv.XconvError(f"boxes file {self.boxes}: no record names a class of the model: "
                                   f"{next(iter(foreign.values()))}")
        self._warned_outside = False
        if foreign:
            warnings.warn(f"boxes file {self.boxes}: records of {', '.join(map(repr, foreign))} left out "
                          f"(not classes of {self.model.display_name})", xconv.XconvWarning, stacklevel=2)

    def annotated_targets(self, source: str) -> list[int]:
        return sorted({record["target"] for record in self.records if names_the_image(record["image"], source)})

    def boxes_for(self, source: str | None, target: int) -> list[tuple[float, float, float, float]]:
        if source is None:
            return []
        return [(record["x0"], record["y0"], record["x1"], record["y1"]) for record in self.records
                if record["target"] == target and names_the_image(record["image"], source)]

    def score(self, images, targets, explanation):
        sources = explanation.sources or [None] * len(images)
        originals = explanation.originals or list(images)
        values = np.full(len(images), np.nan)
        for index, (heatmap, target) in enumerate(zip(explanation.heatmaps, targets)):
            boxes = self.boxes_for(sources[index], int(target))
            if not boxes:
                continue
            height, width = originals[index].shape[:2]
            outside = [box for box in boxes if box[0] >= width or box[1] >= height or box[2] < 0 or box[3] < 0]
            if outside and not self._warned_outside:  # boxes drawn in another photo's pixels, or another size's
                self._warned_outside = True
                warnings.warn(f"boxes file {self.boxes}: a box of {Path(sources[index]).name} lies outside its "
                              f"{width}x{height} pixels ({', '.join(f'{c:g}' for c in outside[0])}); boxes are in the "
                              "original photo's pixels", xconv.XconvWarning, stacklevel=2)
            full = maps_at_input_size(heatmap[None], (height, width))[0]
            if full.max() == full.min():  # no maximum to point with: argmax would say the top-left corner
                values[index] = 0.0
                continue
            y, x = np.unravel_index(np.argmax(full), full.shape)
            values[index] = float(any(distance_to_box(x, y, box) <= self.tolerance for box in boxes))
        return xconv.MetricResult(values)


@xconv.hookimpl
def xconv_register_metrics(register):
    register(Pointing)
