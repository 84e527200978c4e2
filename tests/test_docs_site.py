"""The site builds in strict mode, with its formulas typeset at build time and no script from the web.

Its own file, so the test runner can build the site (on a fresh clone that makes every picture the pages
show, minutes of work) while another worker runs the docs' examples (tests/test_docs.py).
"""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_docs_build_in_strict_mode(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "NO_MKDOCS_2_WARNING": "1"}
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
