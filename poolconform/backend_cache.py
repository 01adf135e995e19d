"""Where backends keep what they may reuse between runs, and the switch that turns it off.

A run of the default matrix spends most of its time on work that gives the same answer
every time: OpenVINO compiling each model, onnx's pure-Python reference evaluator. Both
keep it in `$POOLCONFORM_CACHE_DIR` (else `$XDG_CACHE_HOME/poolconform`, else
`~/.cache/poolconform`), one folder each. `POOLCONFORM_NO_CACHE=1` turns every such cache
off. A folder that cannot be created or written means no cache, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

#: Set to a non-empty value other than "0" to keep no backend cache at all.
OFF_SWITCH = "POOLCONFORM_NO_CACHE"


def cache_root() -> Path:
    """The poolconform cache folder ($POOLCONFORM_CACHE_DIR, else the XDG cache)."""
    root = os.environ.get("POOLCONFORM_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "poolconform"


def enabled() -> bool:
    """False when the user turned backend caches off."""
    return os.environ.get(OFF_SWITCH, "").strip() in ("", "0")


def writable_dir(name: str) -> Path | None:
    """The cache folder `name`, created and proven writable; None when off or not writable."""
    if not enabled():
        return None
    try:
        folder = cache_root() / name
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except (OSError, RuntimeError):  # RuntimeError: no home folder to expand
        return None
    return folder


class BlobStore:
    """Bytes under a hex key, one file each: a JSON header line (the key, the payload's SHA-256),
    then the payload. A file whose header does not match its key or payload reads as absent,
    so a torn write or a renamed file is recomputed, never used."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def open(cls, name: str) -> BlobStore | None:
        """The store in cache folder `name`, None when caches are off or it is not writable."""
        folder = writable_dir(name)
        return cls(folder) if folder is not None else None

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.bin"

    def load(self, key: str) -> tuple[dict, bytes] | None:
        """(header, payload), or None when absent, unreadable or not matching."""
        try:
            with open(self._path(key), "rb") as f:
                header = json.loads(f.readline())
                payload = f.read()
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict) or header.get("key") != key:
            return None
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            return None
        return header, payload

    def save(self, key: str, payload: bytes, **extra: object) -> None:
        """Write atomically (temporary file, then rename); any OSError leaves no entry."""
        header = dict(extra, key=key, sha256=hashlib.sha256(payload).hexdigest())
        path = self._path(key)
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(json.dumps(header).encode() + b"\n" + payload)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError:
            return


def digest(*parts: str | bytes) -> str:
    """SHA-256 over the parts, each length-prefixed so no two part lists collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()
