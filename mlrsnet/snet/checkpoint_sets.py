"""Named sets of MLR-SNet checkpoints, and where their files are found.

A *checkpoint set* is the sequence of MLR-SNet snapshots a meta-training run wrote, one
per epoch, keyed by the epoch number (1-based, as the released files are named).  The
transfer rule uses three of them: the first, the middle and the last epoch (1, 100 and
200 for the authors' 200-epoch release).

``"official"``
    the authors' three released files, ``mlr_snet_1.pth``, ``mlr_snet_100.pth`` and
    ``mlr_snet_200.pth`` (the repository spells them with a space, ``mlr_snet 1.pth``; both
    spellings are accepted).  They are looked for in the directory given by the caller
    (``--checkpoints DIR``), then ``$MLRSNET_CHECKPOINTS``, then the user cache; if absent
    they are downloaded from the authors' public repository into the cache when the network
    allows.  Every file is checked against the sha256 of the release.
``"ours"`` / ``"ours-mini"``
    the set this project meta-trained itself (package data, see
    ``mlrsnet/snet/checkpoints/ours-mini/README.md``).  Not the paper's.
a directory
    anything written by the ``mlrsnet`` meta-training method (``manifest.json`` plus
    ``mlr_snet_<epoch>.pth``), or any folder of files named like the release.  A manifest
    names files inside its folder only (no ``..``, absolute paths or links leading out),
    and only regular files of bounded size are read (:data:`MAX_CHECKPOINT_BYTES`,
    :data:`MAX_MANIFEST_BYTES`): a manifest naming ``/dev/zero`` is refused, not read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.snet.net import CELL_META_TEST_SCRIPT, DEFAULT_CELL, MLRSNet, check_cell, load_mlrsnet

ENV_VAR = "MLRSNET_CHECKPOINTS"
#: Set to 1 to never try the network for the official files.
OFFLINE_ENV_VAR = "MLRSNET_OFFLINE"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mlrsnet-checkpoints/1"

OFFICIAL_EPOCHS = (1, 100, 200)
#: The gate convention the authors' released meta-test script (``meta-test/meta_test.py``,
#: the script they published for their meta-test experiments) runs the released files with:
#: the official set's own convention, hence its default.
OFFICIAL_CONVENTION = CELL_META_TEST_SCRIPT
#: sha256 of the released files (meta-test/mlr_snet {1,100,200}.pth of xjtushujun/MLR-SNet).
OFFICIAL_SHA256 = {
    1: "7159d1e0b20dc1f2f340a8d73757b4b94fea923e62539653571bb75014bcb07d",
    100: "c2da6fd9cd9015e8217b3e9ff3c604ae96888adfb675435252864b406eaebecd",
    200: "5d19565c6065a0d1dff653a082ce65b8f7e66e00765f36e77f86b9cab1c9ea65",
}
OFFICIAL_URL = "https://raw.githubusercontent.com/xjtushujun/MLR-SNet/{branch}/meta-test/mlr_snet%20{epoch}.pth"
OFFICIAL_BRANCHES = ("master", "main")
DOWNLOAD_TIMEOUT_S = 20.0

PACKAGED_DIR = Path(__file__).resolve().parent / "checkpoints"
PACKAGED_ALIASES = {"ours": "ours-mini"}

_FILE_PATTERN = re.compile(r"^mlr[_-]snet[ _](\d+)\.pth$")

#: Bounds on what a checkpoint folder makes us read (an MLR-SNet checkpoint is about 50 kB,
#: a manifest a few hundred bytes): a file above them, or one that is not a regular file (a
#: device such as ``/dev/zero``, a FIFO), is refused before a byte of it is read.
MAX_CHECKPOINT_BYTES = 16 << 20
MAX_MANIFEST_BYTES = 1 << 20


def checkpoint_filename(epoch: int) -> str:
    """The file name for the snapshot after ``epoch`` (1-based), as in the release."""
    return f"mlr_snet_{epoch}.pth"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointSet:
    """Files of one meta-training run, by epoch."""

    name: str
    files: Mapping[int, Path]
    manifest: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.files:
            raise UserError(f"checkpoint set {self.name!r} holds no MLR-SNet checkpoint")

    @property
    def epochs(self) -> list[int]:
        return sorted(self.files)

    @property
    def stages(self) -> tuple[int, int, int]:
        """The epochs of the three-stage rule: first, middle, last (1, 100, 200 officially)."""
        epochs = self.epochs
        first, last = epochs[0], epochs[-1]
        middle = min(epochs, key=lambda e: (abs(e - last // 2), e))
        return first, middle, last

    @property
    def convention(self) -> str:
        """The set's own gate convention, the default for running it: the official set's is
        the released meta-test script's (:data:`OFFICIAL_CONVENTION`); a folder's is its
        manifest's ``cell`` (the method ``mlrsnet`` records the one it trained with); a folder
        without a manifest says nothing, and gets the meta-training code's
        (:data:`~mlrsnet.snet.net.DEFAULT_CELL`)."""
        return check_cell(str(self.manifest.get("cell", DEFAULT_CELL)))

    def path(self, epoch: int) -> Path:
        if epoch not in self.files:
            raise UserError(f"checkpoint set {self.name!r} has no epoch {epoch}; "
                            f"it has: {', '.join(map(str, self.epochs))}")
        return self.files[epoch]

    def load(self, epoch: int, cell: str = DEFAULT_CELL) -> MLRSNet:
        net = load_mlrsnet(self.path(epoch), cell=cell)
        net.requires_grad_(False)
        return net

    def sha256(self) -> dict[int, str]:
        return {e: sha256_of(p) for e, p in sorted(self.files.items())}


# ---------------------------------------------------------------------------------------
# resolution
# ---------------------------------------------------------------------------------------

def resolve_checkpoints(spec: str | os.PathLike[str] = "official", *,
                        checkpoint_dir: str | os.PathLike[str] | None = None,
                        allow_download: bool | None = None) -> CheckpointSet:
    """The checkpoint set named by ``spec``: ``"official"``, ``"ours"`` (or another packaged
    set's name) or a directory.  ``checkpoint_dir`` is where the official files are looked
    for first (the CLI's ``--checkpoints DIR``)."""
    text = os.fspath(spec)
    if text == "official":
        return official_checkpoints(checkpoint_dir, allow_download=allow_download)
    packaged = PACKAGED_DIR / PACKAGED_ALIASES.get(text, text)
    if "/" not in text and os.sep not in text and packaged.is_dir():
        return directory_checkpoints(packaged, name=packaged.name)
    if text in PACKAGED_ALIASES:
        raise UserError(f"the packaged checkpoint set {text!r} is missing from {packaged}: "
                        "the installation is incomplete (reinstall the mlrsnet package)")
    path = Path(text).expanduser()
    if path.is_dir():
        return directory_checkpoints(path)
    known = ["official", *PACKAGED_ALIASES, *sorted(p.name for p in PACKAGED_DIR.glob("*") if p.is_dir())]
    raise UserError(f"unknown MLR-SNet checkpoint set {text!r}: not a directory and not one of "
                    f"{', '.join(dict.fromkeys(known))}")


def directory_checkpoints(path: Path, name: str | None = None) -> CheckpointSet:
    """A set from a folder: its ``manifest.json`` if present, else the files' names."""
    path = Path(path)
    manifest: dict[str, Any] = {}
    manifest_path = path / MANIFEST
    if manifest_path.exists() or manifest_path.is_symlink():
        manifest = read_manifest(manifest_path)
        files = {int(e): _inside(path, f, manifest_path) for e, f in manifest.get("files", {}).items()}
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            raise UserError(f"{manifest_path} lists checkpoints that are missing: {', '.join(missing)}")
        for f in files.values():
            _check_readable(f, MAX_CHECKPOINT_BYTES, "MLR-SNet checkpoint")
        for epoch, digest in manifest.get("sha256", {}).items():
            actual = sha256_of(files[int(epoch)])
            if actual != digest:
                raise UserError(f"{files[int(epoch)]} has sha256 {actual}, but {manifest_path} "
                                f"records {digest}: the file was changed or truncated")
    else:
        files = _files_by_epoch(path)
        for f in files.values():
            _inside(path, f.name, path)
            _check_readable(f, MAX_CHECKPOINT_BYTES, "MLR-SNet checkpoint")
    if not files:
        raise UserError(f"{path} holds no MLR-SNet checkpoints (expected {MANIFEST} or files "
                        f"named {checkpoint_filename(1)}, {checkpoint_filename(2)}, ...)")
    return CheckpointSet(name or str(path), files, manifest)


def _inside(folder: Path, name: str, where: Path) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` once links and ``..``
    are resolved: a set's files are its own (never ``/dev/zero``, ``../x`` or ``/etc/...``)."""
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root):
        raise UserError(f"{where} names {name!r}, which lies outside the checkpoint set's folder "
                        f"{root}; a set's files must be inside its folder (copy them there and "
                        "name them relative to it)")
    return root / name


def _check_readable(path: Path, limit: int, what: str) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes (checked before
    it is read: a device or a FIFO would never end, a huge file would fill the memory)."""
    import stat

    try:
        st = path.stat()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {path} is not a regular file (a device, FIFO or socket); "
                        "replace it with the file itself")
    if st.st_size > limit:
        raise UserError(f"{what} {path} is larger than {limit >> 20} MiB ({st.st_size} bytes), far "
                        "beyond what it can hold; it is not the file it should be")


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    """A checkpoint set's ``manifest.json``, checked: a JSON object whose ``files`` maps epoch
    labels (integers) to file names and whose ``sha256`` (optional) maps them to digests."""
    fix = (f"it is damaged or not a checkpoint-set manifest; restore it, or delete it to use the "
           f"folder's {checkpoint_filename(1)}, {checkpoint_filename(2)}, ... files by name")
    _check_readable(manifest_path, MAX_MANIFEST_BYTES, "checkpoint-set manifest")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {manifest_path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise UserError(f"{manifest_path} is not valid JSON{where}: {fix}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} holds a JSON {type(manifest).__name__}, not an object: {fix}")
    for key in ("files", "sha256"):
        table = manifest.get(key, {})
        if not isinstance(table, dict) or not all(
                isinstance(e, str) and e.strip().lstrip("-").isdigit() and isinstance(v, str)
                for e, v in table.items()):
            raise UserError(f"{manifest_path}: {key!r} must map epoch numbers to "
                            f"{'file names' if key == 'files' else 'sha256 digests'}: {fix}")
    unknown = sorted(set(manifest.get("sha256", {})) - set(manifest.get("files", {})))
    if unknown:
        raise UserError(f"{manifest_path}: 'sha256' lists epoch {unknown[0]} that 'files' does not: {fix}")
    return manifest


def checkpoints_problem(value: Any) -> str | None:
    """Why ``value`` (method ``mlrsnet-transfer``'s ``checkpoints``) names an unusable
    checkpoint folder, or None: a folder is read now (its manifest, files and digests), so a
    damaged one is refused before any training.  Set names are resolved when the run starts."""
    if not isinstance(value, str) or value in PACKAGED_ALIASES or value == "official":
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        return None
    try:
        directory_checkpoints(path)
    except UserError as exc:
        return f"names an unusable checkpoint folder: {exc}"
    return None


def _files_by_epoch(path: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for entry in sorted(path.iterdir()):
        match = _FILE_PATTERN.match(entry.name)
        if match and entry.is_file():
            found.setdefault(int(match.group(1)), entry)
    return found


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlrsnet" / "official"


def official_checkpoints(checkpoint_dir: str | os.PathLike[str] | None = None, *,
                         allow_download: bool | None = None) -> CheckpointSet:
    """The released files, sha256-verified; downloaded into the user cache if absent."""
    candidates = [Path(d).expanduser() for d in (checkpoint_dir, os.environ.get(ENV_VAR)) if d]
    candidates.append(default_cache_dir())
    for folder in candidates:
        files = _official_files_in(folder)
        if files is not None:
            return CheckpointSet("official", files, {"source": "official release", "folder": str(folder),
                                                     "cell": OFFICIAL_CONVENTION})
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV_VAR, "") not in ("1", "true", "yes")
    problem = "downloads are disabled"
    if allow_download:
        try:
            folder = download_official(default_cache_dir())
            files = _official_files_in(folder)
            if files is not None:
                return CheckpointSet("official", files, {"source": "downloaded", "folder": str(folder),
                                                         "cell": OFFICIAL_CONVENTION})
        except OSError as exc:
            problem = f"the download failed ({exc})"
    names = ", ".join(checkpoint_filename(e) for e in OFFICIAL_EPOCHS)
    raise UserError(
        f"the official MLR-SNet checkpoints ({names}) were not found in "
        f"{', '.join(str(c) for c in candidates)} and {problem}. Put the three files from "
        f"https://github.com/xjtushujun/MLR-SNet/tree/master/meta-test in a folder and pass "
        f"--checkpoints DIR or set ${ENV_VAR}=DIR."
    )


def _official_files_in(folder: Path) -> dict[int, Path] | None:
    """The three official files in ``folder`` (verified), or None if any is absent."""
    if not folder.is_dir():
        return None
    files: dict[int, Path] = {}
    for epoch in OFFICIAL_EPOCHS:
        for name in (checkpoint_filename(epoch), f"mlr_snet {epoch}.pth"):
            if (folder / name).is_file():
                files[epoch] = folder / name
                break
        else:
            return None
    for epoch, path in files.items():
        actual = sha256_of(path)
        if actual != OFFICIAL_SHA256[epoch]:
            raise UserError(f"{path} is not the released checkpoint: sha256 {actual}, "
                            f"expected {OFFICIAL_SHA256[epoch]}")
    return files


def download_official(folder: Path) -> Path:
    """Fetch the three released files into ``folder`` (verified before they are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in OFFICIAL_EPOCHS:
        target = folder / checkpoint_filename(epoch)
        if target.is_file() and sha256_of(target) == OFFICIAL_SHA256[epoch]:
            continue
        last_error: OSError | None = None
        for branch in OFFICIAL_BRANCHES:
            url = OFFICIAL_URL.format(branch=branch, epoch=epoch)
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
            except OSError as exc:
                last_error = exc
                continue
            if hashlib.sha256(payload).hexdigest() != OFFICIAL_SHA256[epoch]:
                last_error = OSError(f"{url} does not match the release's sha256")
                continue
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(payload)
            os.replace(tmp, target)
            break
        else:
            raise last_error or OSError("no download source")
    return folder


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Atomically write ``manifest.json`` (a crash never leaves a torn file)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def export_stages(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                  note: str | None = None) -> CheckpointSet:
    """Copy the three stage checkpoints (first, middle, last) of a meta-training folder to
    ``dest`` with a manifest that keeps the source's facts: how the packaged set is made."""
    src = directory_checkpoints(Path(source))
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    stages = sorted(set(src.stages))
    for epoch in stages:
        target = out / checkpoint_filename(epoch)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(src.path(epoch).read_bytes())
        os.replace(tmp, target)
    manifest = {k: v for k, v in src.manifest.items() if k not in ("files", "sha256", "format")}
    manifest.update({
        "files": {str(e): checkpoint_filename(e) for e in stages},
        "sha256": {str(e): sha256_of(out / checkpoint_filename(e)) for e in stages},
        "exported_stages_of": sorted(src.files),
    })
    if note:
        manifest["note"] = note
    write_manifest(out, manifest)
    return directory_checkpoints(out, name=out.name)
