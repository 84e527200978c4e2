"""A live xconv server on a free loopback port (uvicorn in a thread), and the system Chromium for Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO

ARTIFACTS = Path(os.environ.get("XCONV_ARTIFACTS", REPO / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``create_app`` served by a real uvicorn on loopback until ``stop()``."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def chromium_path() -> str:
    """The system Chromium; in CI (XCONV_REQUIRE_BROWSER=1, set by .ci/run) its absence fails the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "needs Debian's chromium package (apt-get install chromium)"
    if os.environ.get("XCONV_REQUIRE_BROWSER"):
        pytest.fail(message + "; .ci/run installs it")
    pytest.skip(message)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
