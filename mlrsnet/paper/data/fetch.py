"""Getting an official file onto disk and proving it is the official one.

A raw file comes from, in order: the ``source`` folder the user names, the download
cache ``<data dir>/raw/<dataset>/``, or its mirrors.  Whatever the origin, its digest is
checked before anything is built from it (unless the caller explicitly opts out, which
only tests with hand-made files in the official format should do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mlrsnet.errors import UserError
from mlrsnet.paper.data.locate import PathLike, prepare_command
from mlrsnet.paper.data.sources import RawFile

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
#: Sent with every download: some mirrors refuse urllib's default ``Python-urllib/3.x``
#: (WikiText-2's answers 403 to it).
USER_AGENT = "Mozilla/5.0 (compatible; mlrsnet-bench; +https://pypi.org/project/mlrsnet/)"
#: In a dataset's download cache: the mirror that served each file last, tried first next time.
MIRRORS_FILE = ".mirrors.json"


class ChecksumError(UserError):
    """A file's digest differs from the official one: corrupt, truncated or not official."""


class DownloadError(UserError):
    """No mirror could be reached; the message says what to fetch by hand."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (archives are hundreds of MB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, algorithm: str, expected: str, *, what: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the expected digest."""
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"{path} ({what}) has {algorithm} {actual}, but the official file has {expected}. "
            f"It is corrupt, truncated or a different release: delete it and fetch it again.")


@contextmanager
def atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` via a temporary sibling and rename, so no reader sees a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def manual_fetch_message(name: str, raw: RawFile, reason: str,
                         data_dir: PathLike | None) -> str:
    return (f"Cannot get '{raw.filename}' for {name}: {reason}. Fetch it by hand from "
            f"{raw.manual_route} ({raw.algorithm} {raw.digest}), put it in a folder, and run "
            f"`{prepare_command(name, data_dir)} --source FOLDER`.")


def obtain(name: str, raw: RawFile, *, source: Path | None, cache_dir: Path, download: bool,
           verify: bool, data_dir: PathLike | None = None,
           alternatives: tuple[str, ...] = ()) -> Path:
    """Path of a verified copy of ``raw``: from ``source``, the cache, or a download.

    ``source`` may be the file itself or a folder holding it (by its official name or one
    of ``alternatives``).  Downloads land in ``cache_dir`` and are kept, so preparing
    again does not fetch again.
    """
    downloaded = False
    if source is not None:
        path = _find_in_source(Path(source), (raw.filename, *alternatives))
        if path is None:
            raise UserError(f"--source {source} holds no '{raw.filename}' (needed for {name}); "
                            f"point it at the folder with the official file.")
    else:
        path = cache_dir / raw.filename
        if not path.is_file():
            if not download:
                raise DownloadError(manual_fetch_message(
                    name, raw, f"it is not in {cache_dir} and downloading is off", data_dir))
            _download(name, raw, path, data_dir)
            downloaded = True
    if verify:
        try:
            verify_file(path, raw.algorithm, raw.digest, what=f"official {raw.filename}")
        except ChecksumError:
            if downloaded:  # never leave a bad download in the cache
                path.unlink(missing_ok=True)
            raise
    return path


def _find_in_source(source: Path, names: tuple[str, ...]) -> Path | None:
    if source.is_file():
        return source if source.name in names else None
    for file_name in names:
        if (source / file_name).is_file():
            return source / file_name
    return None


def mirror_order(raw: RawFile, cache_dir: Path) -> list[str]:
    """``raw``'s mirrors, the one that served it last (recorded in the cache) first, then
    the others in their listed order (the ones known to answer come first there)."""
    try:
        last = json.loads((cache_dir / MIRRORS_FILE).read_text()).get(raw.filename)
    except (OSError, ValueError, AttributeError):
        last = None
    return sorted(raw.urls, key=lambda url: url != last)


def _remember(raw: RawFile, cache_dir: Path, url: str) -> None:
    path = cache_dir / MIRRORS_FILE
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(known, dict):
            known = {}
        known[raw.filename] = url
        path.write_text(json.dumps(known, indent=1))
    except (OSError, ValueError):
        pass  # only an ordering hint


def _download(name: str, raw: RawFile, target: Path, data_dir: PathLike | None,
              opener: Callable[..., IO[bytes]] = urllib.request.urlopen) -> None:
    failures: list[str] = []
    for url in mirror_order(raw, target.parent):
        log.info("downloading %s from %s", raw.filename, url)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with opener(request, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_output(target) as out:
                shutil.copyfileobj(response, out, CHUNK)
            _remember(raw, target.parent, url)
            return
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DownloadError(manual_fetch_message(name, raw, "download failed (" + "; ".join(failures) + ")",
                                             data_dir))
