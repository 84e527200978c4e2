"""The site builds in strict mode, with its formulas typeset at build time and no script from the web.

Its own file, so the test runner can build the site (on a fresh clone that makes every picture the pages
show) while another worker runs the docs' examples (tests/test_docs.py). Missing pictures are made as
drafts (docs/hooks.py: every picture maker runs, on fewer photos, methods, ascent steps and RISE masks;
this test takes about 110 s alone on 2 cores); a plain ``mkdocs build`` replaces them.
"""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_docs_build_in_strict_mode(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "NO_MKDOCS_2_WARNING": "1", "XCONV_DOCS_DRAFT": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "gradcam" / "index.html").is_file()
    assert "xconv explain" in (tmp_path / "site" / "generated" / "cli" / "index.html").read_text()
    for page in ("gradcam", "cam-methods", "gradient-methods", "perturbation-methods"):
        html = (tmp_path / "site" / page / "index.html").read_text()
        assert "<math" in html and "\\(" not in html and "arithmatex" not in html, page  # typeset at build time
        assert "_compare.png" in html or page == "gradcam"
    pages = list((tmp_path / "site").rglob("*.html"))
    assert not [p for p in pages if re.search(r'<script[^>]+src="https?://', p.read_text())], "a page loads a script"
    for family in ("cams", "gradients", "perturbation"):
        assert (tmp_path / "site" / "generated" / f"{family}_compare.png").is_file()


def test_draft_pictures_never_pass_for_full_ones(tmp_path, monkeypatch):
    """A draft build keeps full pictures and drafts what is missing; a full build remakes anything drafted."""
    monkeypatch.syspath_prepend(str(REPO / "docs"))
    import hooks

    generated = tmp_path / "generated"
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    monkeypatch.setattr(hooks, "GENERATED", generated)
    monkeypatch.setattr(hooks, "STAMP", generated / "pictures.stamp")
    monkeypatch.setattr(hooks, "BUNDLED_MODEL", model)
    monkeypatch.setattr(hooks.subprocess, "run", lambda *args, **kwargs: None)  # the CLI reference
    made = []

    def maker(name):
        def make(**options):
            made.append((name, options))
            (generated / name).write_text(str(options))
        return make

    monkeypatch.setattr(hooks, "PICTURES", [(("a.png",), maker("a.png"), {"steps": 8}), (("b.png",), maker("b.png"), {})])

    def build(draft):
        made.clear()
        monkeypatch.setenv("XCONV_DOCS_DRAFT", "1" if draft else "0")
        hooks.on_pre_build(config=None)
        return list(made), hooks.STAMP.read_text().split()[1]

    assert build(draft=True) == ([("a.png", {"steps": 8}), ("b.png", {})], "draft")
    assert build(draft=True) == ([], "draft")
    assert build(draft=False) == ([("a.png", {}), ("b.png", {})], "full")
    assert build(draft=True) == ([], "full")  # full pictures serve a draft build
    (generated / "a.png").unlink()
    assert build(draft=True) == ([("a.png", {"steps": 8})], "draft")  # one draft makes the set a draft
    assert build(draft=False) == ([("a.png", {}), ("b.png", {})], "full")
    model.write_bytes(b"other weights")
    assert build(draft=True)[0] == [("a.png", {"steps": 8}), ("b.png", {})]  # another model: all remade
