"""Downloads from mirrors as they behave today, served by a local HTTP server.

WikiText-2's first mirror (the closed S3 bucket) answers 403 to everyone; its second (the
author's) answers 403 to urllib's default User-Agent and serves the file to any other.
The server here does the same, with the real PTB files standing in for the payload (their
official digests are checked).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlrsnet.paper.data import DownloadError, load_corpus, prepare
from mlrsnet.paper.data.fetch import MIRRORS_FILE, manual_fetch_message
from mlrsnet.paper.data.sources import RAW_FILES, RawFile


class Mirror(http.server.BaseHTTPRequestHandler):
    """``/closed/<file>``: 403 to everyone; ``/picky/<file>``: 403 to ``Python-urllib``,
    the file to anyone else.  Each request is logged as (path, User-Agent)."""

    root: Path
    seen: list[tuple[str, str]]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        agent = self.headers.get("User-Agent", "")
        self.seen.append((self.path, agent))
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "closed" or agent.startswith("Python-urllib"):
            self.send_error(403, "Forbidden")
            return
        body = (self.root / name.split(".", 1)[1]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(shared_data: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    handler = type("Handler", (Mirror,), {"root": shared_data / "ptb", "seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _mirrors(base: str, order: tuple[str, ...]) -> tuple[RawFile, ...]:
    return tuple(RawFile(raw.filename, tuple(f"{base}/{kind}/{raw.filename}" for kind in order),
                         raw.algorithm, raw.digest) for raw in RAW_FILES["ptb"])


def test_a_mirror_that_refuses_urllibs_user_agent_serves_the_suites(server, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = server
    monkeypatch.setitem(RAW_FILES, "ptb", _mirrors(base, ("closed", "picky")))
    prepare("ptb", data_dir=tmp_path / "data")
    assert load_corpus("ptb", data_dir=tmp_path / "data").train.numel() == 929_589
    assert seen and all(not agent.startswith("Python-urllib") and "mlrsnet-bench" in agent for _, agent in seen)


def test_the_mirror_that_answered_is_tried_first_next_time(server, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = server
    monkeypatch.setitem(RAW_FILES, "ptb", _mirrors(base, ("closed", "picky")))
    prepare("ptb", data_dir=tmp_path / "data")
    cache = tmp_path / "data" / "raw" / "ptb"
    assert json.loads((cache / MIRRORS_FILE).read_text())["ptb.train.txt"].endswith("/picky/ptb.train.txt")
    for raw in RAW_FILES["ptb"]:
        (cache / raw.filename).unlink()
    seen.clear()
    prepare("ptb", data_dir=tmp_path / "data")
    assert [path.split("/")[1] for path, _ in seen] == ["picky"] * 3  # the closed one is not asked


def test_no_mirror_answering_names_the_manual_route(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setitem(RAW_FILES, "ptb", _mirrors(base, ("closed", "closed")))
    with pytest.raises(DownloadError, match="403") as err:
        prepare("ptb", data_dir=tmp_path / "data")
    assert "Fetch it by hand" in str(err.value) and "--source FOLDER" in str(err.value)


def test_wikitext2_lists_the_answering_mirror_first_and_names_it_for_a_browser() -> None:
    (raw,) = RAW_FILES["wikitext-2"]
    assert raw.urls[0] == "https://wikitext.smerity.com/wikitext-2-v1.zip"
    message = manual_fetch_message("wikitext-2", raw, "download failed", None)
    assert "s3.amazonaws.com" not in message and "wikitext.smerity.com" in message
    assert len(RAW_FILES["tinyimagenet"][0].urls) >= 2
