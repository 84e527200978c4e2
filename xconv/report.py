"""``xconv report``: one self-contained HTML file (pictures inlined, no external assets) to hand to someone.

Per photo: the prediction with every class's probability, a heatmap per class for each method asked for,
and the activation grids of the model's first layers; once per report, the filter patterns of one layer.
The computation is the web page's (:class:`xconv.web.service.ExplainService`), batched over the photos.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xconv.files import write_bytes
from xconv.html import figure, jpeg_data_url, page, wide
from xconv.images import ImageError, load_image

#: Pictures in the report: overlays and grids are re-encoded as JPEG no longer than these.
OVERLAY_SIDE = 320
GRID_SIDE = 900


@dataclass
class Report:
    path: Path
    photos: int = 0
    errors: list[ImageError] = field(default_factory=list)


def build_report(model, images, out, methods=("gradcam",), activation_layers: int = 2, filter_layer=None,
                 batch_size: int = 16, method_options: dict[str, dict] | None = None) -> Report:
    """Write the report for ``images`` (paths) to ``out``; files that cannot be decoded are listed in it
    (and in ``Report.errors``), the others are reported in full. When none can be, nothing is written: an
    earlier report at ``out`` is kept. ``method_options``: each method's options, by method name."""
    from xconv.api import heatmap_method
    from xconv.errors import XconvError
    from xconv.web.service import ExplainKey, ExplainService

    if not methods:
        raise XconvError("--method needs at least one heatmap method, e.g. gradcam")
    if not images:
        raise XconvError("no input images (folders are searched recursively for .jpg, .png, .bmp, .webp, .tif and .gif files)")
    service = ExplainService(model, method_options=method_options)
    layers = service.layers[:activation_layers]
    for method in methods:  # the web service's own words for this would name its API fields
        heatmap_method(method, "a report's methods are heatmap methods; every report already has activation "
                               "grids (--layers) and a filter-pattern panel (--filters-layer)")
    keys = [service.check(ExplainKey(method)) for method in methods]
    # Checked before any photo is explained: a typo must not cost the whole run.
    filter_layer = service.pattern_layer(filter_layer).path
    report = Report(Path(out))
    sections = []
    for start in range(0, len(images), batch_size):
        uploads, names = [], []
        for path in images[start:start + batch_size]:
            try:
                uploads.append(service.upload(load_image(path), Path(path).name))
                names.append(Path(path).name)
            except ImageError as error:
                report.errors.append(error)
        if not uploads:
            continue
        per_method = [service.explain(key, uploads) for key in keys]
        batch = np.stack([upload.image for upload in uploads])
        grids = {layer: service.activation_grids(layer, batch) for layer in layers}
        for index, (name, upload) in enumerate(zip(names, uploads)):
            sections.append(photo_section(name, upload, [results[index] for results in per_method],
                                          {layer: grid[index] for layer, grid in grids.items()}))
        report.photos += len(uploads)
    if not report.photos:
        return report
    filters = service.filters(filter_layer)
    body = summary(model, report, methods) + "".join(sections) + filter_section(filters) + error_section(report)
    report.path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all; a file name that is not UTF-8 (an undecodable byte) shows a "?" there.
    write_bytes(report.path, page(f"{TITLE_START}{model.display_name}", body).encode("utf-8", "replace"))
    return report


#: How every report's title starts: what tells a report xconv may replace from a file of the user's own.
TITLE_START = "xconv report: "


def is_xconv_report(path: Path) -> bool:
    """Whether ``path`` is a report xconv wrote (its title, near the start), which a new one may replace."""
    try:
        with open(path, "rb") as handle:
            return f"<title>{TITLE_START}".encode() in handle.read(4096)
    except OSError:
        return False


def summary(model, report: Report, methods) -> str:
    return (f'<p>{report.photos} photo(s) explained by <strong>{html.escape(model.display_name)}</strong> '
            f'(classes: {html.escape(", ".join(model.class_names))}) with {html.escape(", ".join(methods))}.</p>')


def photo_section(name: str, upload, results: list[dict], grids: dict) -> str:
    first = results[0]
    probabilities = ", ".join(f"{row['class']} {row['probability']:.3f}" for row in first["probabilities"])
    parts = [f'<section class="xconv-card"><h2>{html.escape(name)}</h2>',
             f'<p class="prediction"><strong>{html.escape(first["label"])} {first["probability"]:.3f}</strong> '
             f"({html.escape(probabilities)})</p>",
             '<div class="xconv-gallery">', figure(jpeg_data_url(upload.display, OVERLAY_SIDE), "photo", name)]
    for result in results:
        for heatmap in result["heatmaps"]:
            caption = f"{result['method']}: {heatmap['class']} {heatmap['probability']:.3f}"
            parts.append(figure(jpeg_data_url(heatmap["png"], OVERLAY_SIDE), caption))
    parts.append("</div>")
    for layer, grid in grids.items():
        parts.append(f"<h3>Activations of {html.escape(layer)}</h3>"
                     + wide(jpeg_data_url(grid["png"], GRID_SIDE), f"activations of {layer}"))
    parts.append("</section>")
    return "".join(parts)


def filter_section(filters: dict) -> str:
    return (f'<section class="xconv-card"><h2>Filter patterns of {html.escape(filters["layer"])}</h2>'
            "<p>The input each filter responds to most; the number on each is the share of its activation "
            "it keeps when moved a little (faded below 0.5).</p>"
            + wide(jpeg_data_url(filters["png"], GRID_SIDE), f"filter patterns of {filters['layer']}") + "</section>")


def error_section(report: Report) -> str:
    if not report.errors:
        return ""
    # The file's name, not its path as typed: the report is meant to be handed to someone else.
    items = "".join(f"<li>{html.escape(Path(error.path).name)}: {html.escape(error.reason)}</li>"
                    for error in report.errors)
    return f'<section class="xconv-card xconv-error"><h2>Not explained</h2><ul>{items}</ul></section>'
