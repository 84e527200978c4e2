"""HTML for explanations: compact inline pictures, shared by ``xconv report`` and Jupyter's display.

Pictures are drawn by the same renderer plugins as the CLI, into a temporary folder, then re-encoded as
JPEG data URLs no larger than needed (a report of ten photos stays a few MB and opens anywhere, offline).
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

import numpy as np

from xconv.images import shrink_to_fit

#: Layout of pictures, also inlined with each explanation shown in a notebook.
GALLERY_STYLE = """
.xconv-gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.xconv-gallery figure,.xconv-wide{margin:0}
.xconv-gallery img,.xconv-wide img{max-width:100%;border-radius:6px}
"""

STYLE = GALLERY_STYLE + """
body{font:15px/1.45 system-ui,sans-serif;color:#1d2330;background:#f5f7fa;margin:0}
main{max-width:1100px;margin:0 auto;padding:8px 12px}
.xconv-card{background:#fff;border:1px solid #d8dde6;border-radius:10px;padding:12px;margin:12px 0}
figcaption{color:#5b6475;font-size:13px}
.xconv-error{color:#b3261e}
h2{margin:4px 0} h3{margin:12px 0 6px;font-size:16px}
"""


def jpeg_data_url(picture, max_side: int | None = 320, quality: int = 85) -> str:
    """uint8 RGB array, or PNG/JPEG bytes or a path, as a JPEG data URL at most ``max_side`` pixels long."""
    import cv2

    if isinstance(picture, (str, Path)):
        picture = Path(picture).read_bytes()
    if isinstance(picture, bytes):
        picture = cv2.cvtColor(cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if max_side:
        picture = shrink_to_fit(picture, max_side)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def figure(url: str, caption: str, alt: str | None = None) -> str:
    return (f'<figure><img src="{url}" alt="{html.escape(alt or caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def wide(url: str, alt: str) -> str:
    return f'<div class="xconv-wide"><img src="{url}" alt="{html.escape(alt)}"></div>'


#: Pictures a notebook cell shows at most: an explanation of a 256-photo folder inlined 256 pictures.
MAX_INLINE_PICTURES = 24


def explanation_html(explanation, max_side: int = 256) -> str:
    """An explanation as HTML: its default renderer's pictures, small, with one caption each (the first
    ``MAX_INLINE_PICTURES``, and how many more there are)."""
    import xconv
    from xconv.errors import XconvError
    from xconv.registry import get_registry

    header = f"<p><code>{html.escape(repr(explanation))}</code></p>"
    try:
        renderer = get_registry().default_renderer(explanation.kind)  # the one the CLI would use
    except XconvError:
        return header
    with tempfile.TemporaryDirectory(prefix="xconv-html-") as scratch:
        outputs = xconv.render(explanation, renderer, scratch)
        many = len(outputs) > 1 and explanation.kind == "heatmap"
        side = max_side if many else max_side * 3
        parts = [figure(jpeg_data_url(output.path, side), Path(output.path).stem)
                 for output in outputs[:MAX_INLINE_PICTURES]]
    more = len(outputs) - len(parts)
    note = (f"<p>{more} more pictures not shown: <code>xconv.render(e, {html.escape(repr(renderer))}, "
            "'folder')</code> writes them all.</p>" if more > 0 else "")
    return (f'<div class="xconv-explanation"><style>{GALLERY_STYLE}</style>{header}'
            f'<div class="{"xconv-gallery" if many else "xconv-wide"}">{"".join(parts)}</div>{note}</div>')


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
