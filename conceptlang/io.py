"""Writing files so that nothing is ever left half-written: write a temp file beside it, then rename.

Outputs are checked before any work starts (:func:`check_file_output`, :func:`check_dir_output`),
and a PNG with its JSON sidecar is published as a pair (:func:`write_output_pair`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from conceptlang.errors import OutputError


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256 as 64 lowercase hex digits (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, torch tensors and tuples turned into JSON types and
    dict keys into strings; anything else JSON cannot hold becomes its ``repr``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        return obj.detach().cpu().tolist()
    return repr(obj)


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is renamed over ``path``.

    The result has the permissions a plain ``open(path, "w")`` would give it: an existing file's
    mode is kept, a new file gets 0o666 less the umask (``mkstemp`` alone would leave 0o600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~current_umask()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _no_nul(path: str | os.PathLike, what: str) -> str | os.PathLike:
    if "\x00" in os.fspath(path):
        raise OutputError(f"{what} {os.fspath(path)!r}: a path cannot contain a NUL character")
    return path


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path, what: str, target: Path) -> None:
    """Create and remove a temporary file in ``folder``: the one sure test that it can be written."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".conceptlang-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise OutputError(f"{what} {target}: cannot write in {folder} ({err.strerror or err})") from None


def _check_folder_on_the_way(folder: Path, what: str, target: Path) -> None:
    """``folder`` is (or will be created as) a folder that can be written."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputError(f"{what} {target}: {base} is a file, not a folder")
    if base == folder:
        _probe(folder, what, target)
        return
    # The folders from base down are created when writing; base must let us create them.
    try:
        tmp = tempfile.mkdtemp(prefix=".conceptlang-probe.", dir=base)
        os.rmdir(tmp)
    except OSError as err:
        raise OutputError(f"{what} {target}: cannot create {folder} in {base} ({err.strerror or err})") from None


def check_file_output(path: str | os.PathLike, what: str = "output") -> None:
    """Raise :class:`OutputError` now if ``path`` could not be written later: it is a folder, a
    folder on its way is a file, or its folder cannot be written (read-only, no permission).
    Nothing is created (a temporary probe file is made and removed)."""
    target = Path(_no_nul(path, what))
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder, not a file")
    _check_folder_on_the_way(Path(os.path.abspath(target)).parent, what, target)


def check_dir_output(path: str | os.PathLike, what: str = "output folder") -> None:
    """Raise :class:`OutputError` now if the folder ``path`` could not be created or written in."""
    target = Path(_no_nul(path, what))
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError(f"{what} {target} is a file, not a folder")
    _check_folder_on_the_way(Path(os.path.abspath(target)), what, target)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one (H', W', 3) grid with ``pad`` pixels of grey between."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    n, h, w, _ = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 128, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def encode_png(image: np.ndarray, scale: int = 1) -> bytes:
    """One uint8 (H, W, 3) image as PNG bytes, optionally upscaled (nearest) by ``scale``."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> None:
    """Write one uint8 (H, W, 3) image as PNG atomically, optionally upscaled (nearest) by ``scale``."""
    write_bytes(path, encode_png(image, scale))


def save_grid(path: str | os.PathLike, images: np.ndarray, ncols: int | None = None, scale: int = 1) -> None:
    save_png(path, image_grid(images, ncols), scale=scale)


# ---- a PNG and its JSON sidecar, published together ---------------------------------------------


@contextmanager
def folder_lock(folder: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An advisory lock on a folder (``flock`` on the folder itself, so no lock file is left
    behind); exclusive for writers, ``shared`` for readers. A no-op where flock is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them, so an
    interrupt cannot land between two renames that belong together.

    A Python-level handler records them meanwhile (a signal mask would not do: numpy's and torch's
    worker threads leave them unblocked). Python handles signals in the main thread only; from
    any other thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum, frame):
        if signum not in pending:
            pending.append(signum)

    saved = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None or signal.getsignal(sig) is None:  # absent, or a handler Python cannot restore
            continue
        saved[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in pending:
            signal.raise_signal(sig)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_output_pair(png_path: str | os.PathLike, png: bytes, json_path: str | os.PathLike, record: dict) -> None:
    """Publish a PNG and its JSON sidecar so that no reader sees a mismatched pair.

    Both are written to temporary files first; then, holding the folder's lock (two runs writing
    the same pair take turns) and with interrupts held back, the PNG is renamed into place and
    the JSON last. ``record["outputs"]["grid_sha256"]`` is set to the PNG's sha256, so a reader
    that does not take the lock can still tell a PNG from the JSON of another run
    (:func:`read_output_pair` takes the lock and checks it).
    """
    png_path, json_path = Path(png_path), Path(json_path)
    record.setdefault("outputs", {})["grid_sha256"] = sha256_bytes(png)
    text = (json.dumps(record, indent=2) + "\n").encode("utf-8")
    temps: list[Path] = []
    try:
        for data, target in ((png, png_path), (text, json_path)):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~current_umask())
        folders = sorted({os.path.abspath(png_path.parent), os.path.abspath(json_path.parent)})
        with _locked(folders), _signals_deferred():
            os.replace(temps[0], png_path)
            os.replace(temps[1], json_path)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


@contextmanager
def _locked(folders: list[str], shared: bool = False) -> Iterator[None]:
    if not folders:
        yield
        return
    with folder_lock(folders[0], shared), _locked(folders[1:], shared):
        yield


def read_output_pair(png_path: str | os.PathLike, json_path: str | os.PathLike | None = None) -> tuple[bytes, dict]:
    """Read a PNG and its sidecar under the folder's shared lock; :class:`OutputError` when the
    sidecar's ``outputs.grid_sha256`` does not name this PNG (a pair written without the lock)."""
    png_path = Path(png_path)
    json_path = Path(json_path) if json_path is not None else png_path.with_suffix(".json")
    folders = sorted({os.path.abspath(png_path.parent), os.path.abspath(json_path.parent)})
    with _locked(folders, shared=True):
        png = png_path.read_bytes()
        record = json.loads(json_path.read_text(encoding="utf-8"))
    named = (record.get("outputs") or {}).get("grid_sha256") if isinstance(record, dict) else None
    if named != sha256_bytes(png):
        raise OutputError(f"{json_path} does not describe {png_path}: its grid_sha256 is {named!r}, "
                          f"the PNG's is {sha256_bytes(png)}")
    return png, record
