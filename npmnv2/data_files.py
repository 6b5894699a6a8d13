"""The data npmnv2 ships and the data it can fetch.

Shipped inside the package (`npmnv2/data/`, found with `importlib.resources`):
    the default model, Coral's MobileNetV2 1.0 224 uint8 ImageNet classifier (Apache-2.0, with its
    license and labels), loaded by the name "npmnv2/default"; two sample photos, `cat.jpg` and
    `grace_hopper.jpg` (`sample_image`).

Fetched on request (`fetch`, or `npmnv2 data fetch`): the other public files the tests, notebooks
and benchmarks use (two DeepLabV3 models, a TF2 per-channel model, an iNaturalist insect
classifier, photos, a reference mask, label files), each from its original public location and
checked against a pinned SHA-256 before it is put in place. They go to a cache folder:
`$NPMNV2_DATA` when set, else `~/.cache/npmnv2` (or `$XDG_CACHE_HOME/npmnv2`).

Where the data is looked for (`data_dir`, `npmnv2 data list`, the notebooks and the tests alike),
the first of:
1. `$NPMNV2_DATA`, when set: then only there (an empty or missing folder is an error, never passed over);
2. `../shared/data/coral` next to the project, when npmnv2 runs from a checkout (its developers' copy);
3. the cache `npmnv2 data fetch` fills (`~/.cache/npmnv2`, or `$XDG_CACHE_HOME/npmnv2`).
A folder counts when it holds any catalogued file.

A download never leaves a partial file: it is written to a fresh temporary file beside its
destination, hashed while it streams, refused when it is longer or shorter than pinned or its hash
differs, and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

DEFAULT_MODEL = "npmnv2/default"  # the name that loads the embedded classifier everywhere a weights source is taken
DEFAULT_MODEL_FILE = "mobilenet_v2_1.0_224_quant.tflite"
SAMPLE_IMAGES = ("cat", "grace_hopper")  # npmnv2/data/<name>.jpg
# The public repository the files come from; a mirror with the same file names can stand in (--base-url).
BASE_URL = "https://raw.githubusercontent.com/google-coral/test_data/master/"
CHUNK = 1 << 20


class DataFile(NamedTuple):
    """One public file: its name, pinned SHA-256 and size, what it is and under which license."""

    name: str
    sha256: str
    size: int
    what: str
    license: str


_APACHE = "Apache-2.0 (google-coral/test_data, see LICENSE)"
_OPEN_IMAGES = "CC BY 2.0 (Open Images V5, see COPYRIGHT)"

CATALOGUE: tuple[DataFile, ...] = (
    DataFile(
        "mobilenet_v2_1.0_224_quant.tflite",
        "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
        3610798,
        "MobileNetV2 1.0 224 ImageNet classifier, uint8 per-tensor (also shipped)",
        _APACHE,
    ),
    DataFile(
        "deeplabv3_mnv2_pascal_quant.tflite",
        "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398",
        2193224,
        "DeepLabV3 on MobileNetV2 1.0, PASCAL VOC, uint8, output stride 16",
        _APACHE,
    ),
    DataFile(
        "deeplabv3_mnv2_dm05_pascal_quant.tflite",
        "0470d2a782aa54eeeb99d32e7b6b3fb7722905c7c4f5d26bd957ec861366d48b",
        760904,
        "DeepLabV3 on MobileNetV2 0.5, PASCAL VOC, uint8",
        _APACHE,
    ),
    DataFile(
        "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
        4070174,
        "MobileNetV2 1.0 from TF2/Keras, full-integer int8 per-channel",
        _APACHE,
    ),
    DataFile(
        "mobilenet_v2_1.0_224_inat_insect_quant.tflite",
        "0ebaeb474dccf56b8b818b014f0d6a8e22b35a45b491a659f0b5405c9c838282",
        3655867,
        "MobileNetV2 1.0 iNaturalist insects (1022 classes), FULLY_CONNECTED head",
        _APACHE,
    ),
    DataFile(
        "cat.bmp",
        "34f235786382686111728287fd26d4c24dd8c25de8233469d6eeb301888ce0a9",
        523914,
        "photo: an Egyptian cat",
        _OPEN_IMAGES,
    ),
    DataFile(
        "bird.bmp",
        "3fd22d6ed352b8e721d9982e38ed655f8429e168bb53ad205c6f3cdfa848e994",
        526986,
        "photo: a chickadee",
        _OPEN_IMAGES,
    ),
    DataFile(
        "sunflower.bmp",
        "896b5e31cee42ebe32ee91251fc42041ca03c767fe02bd7ebc0e37d45f4a45b2",
        522378,
        "photo: a sunflower",
        _OPEN_IMAGES,
    ),
    DataFile(
        "dragonfly.bmp",
        "bb42efbdd3ef1a06cc17cc4db862373be91d74eec2fcdeeb6665247a3ae6ce52",
        642186,
        "photo: a dragonfly",
        _OPEN_IMAGES,
    ),
    DataFile(
        "grace_hopper.bmp",
        "c43444bf3b1b1e3080551ca194bd231da4b67f20fc91454502915a6b806b614f",
        921738,
        "photo: Grace Hopper in uniform",
        "public domain (U.S. Navy, see COPYRIGHT)",
    ),
    DataFile(
        "bird_segmentation.bmp",
        "24dbd0ca9c379b5b8d055026e073a3ffb54ad72ac0746d31d16da9306865ee48",
        790158,
        "photo: a bird, 513x513, for segmentation",
        _OPEN_IMAGES,
    ),
    DataFile(
        "bird_segmentation_mask.bmp",
        "6b21e7b7c5825bba126b4588a917339c915e7073db29d9f3d404ba8aeed53454",
        265788,
        "reference segmentation mask of bird_segmentation.bmp (class ids)",
        _OPEN_IMAGES,
    ),
    DataFile(
        "imagenet_labels.txt",
        "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
        21686,
        "ImageNet labels, 1001 lines (0 = background)",
        _APACHE,
    ),
    DataFile(
        "inat_insect_labels.txt",
        "e5e03664a8a70eafc3308268eb8cd6aa28652912735bfdd45e436ae9617155bc",
        40317,
        "iNaturalist insect labels, 1022 names",
        _APACHE,
    ),
    DataFile(
        "pascal_voc_segmentation_labels.txt",
        "7337a2b06728385fb3e1106416c67bfddf69628598b1f2f0db6a63cd63fb6b1e",
        263,
        "PASCAL VOC labels, 21 names",
        _APACHE,
    ),
    DataFile(
        "LICENSE",
        "f9946796a8a5bd5981565142fa42e3b0cc36aef6f80e86beaf5905b3c0fef1b5",
        11361,
        "the Apache-2.0 license of the repository",
        _APACHE,
    ),
    DataFile(
        "COPYRIGHT",
        "ed11966e8384c477c89f13f1ef06f3d68a634efc6ea2f9b3f12f170ad7e62e87",
        3282,
        "image credits and licenses",
        _APACHE,
    ),
)


class DataError(Exception):
    """A data file that is missing, could not be fetched, or is not the pinned file."""


# ============================================================================ shipped files


def embedded(name: str) -> Path:
    """The path of a file shipped in `npmnv2/data/` (the default model, its labels, the photos)."""
    ref = importlib.resources.files("npmnv2").joinpath("data", name)
    path = Path(os.fspath(ref)) if isinstance(ref, os.PathLike) else None
    if path is None or not path.is_file():
        raise DataError(f"npmnv2/data/{name} is not installed with the package; reinstall npmnv2.")
    return path


def default_model_path() -> Path:
    """The embedded Coral MobileNetV2 1.0 224 uint8 classifier (.tflite, labels in its metadata)."""
    return embedded(DEFAULT_MODEL_FILE)


def sample_image(name: str = "cat") -> Path:
    """One of the shipped sample photos: "cat" (CC BY 2.0) or "grace_hopper" (public domain)."""
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"sample_image: no shipped photo {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}.")
    return embedded(f"{name}.jpg")


# ============================================================================ fetched files


def cache_dir() -> Path:
    """Where `fetch` puts files: $NPMNV2_DATA, else $XDG_CACHE_HOME/npmnv2, else ~/.cache/npmnv2."""
    if os.environ.get("NPMNV2_DATA"):
        return Path(os.environ["NPMNV2_DATA"])
    return default_cache_dir()


def default_cache_dir() -> Path:
    """The cache folder without $NPMNV2_DATA: $XDG_CACHE_HOME/npmnv2, else ~/.cache/npmnv2."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "npmnv2"


def checkout_data_dir() -> Path | None:
    """`../shared/data/coral` next to the project, when this npmnv2 runs from a checkout (a
    `pyproject.toml` beside the package); None for an installed copy."""
    root = Path(__file__).resolve().parents[1]
    return root.parent / "shared" / "data" / "coral" if (root / "pyproject.toml").is_file() else None


def lookup_order() -> list[tuple[str, Path]]:
    """Where the data is looked for, in order, each with why (see the module docstring)."""
    if os.environ.get("NPMNV2_DATA"):
        return [("$NPMNV2_DATA", Path(os.environ["NPMNV2_DATA"]))]
    order = []
    checkout = checkout_data_dir()
    if checkout is not None:
        order.append(("next to the project checkout", checkout))
    order.append(("the cache `npmnv2 data fetch` fills", default_cache_dir()))
    return order


def holds_data(folder: Path) -> bool:
    return folder.is_dir() and any((folder / entry.name).is_file() for entry in CATALOGUE)


def find_data_dir() -> Path | None:
    """The first folder of `lookup_order` that holds any catalogued file, or None."""
    return next((folder for _, folder in lookup_order() if holds_data(folder)), None)


def data_dir() -> Path:
    """The folder holding the real data (the first of `lookup_order` that holds it), or a DataError
    that says how to fill it. Notebooks and scripts start with `DATA = data_dir()`."""
    folder = find_data_dir()
    if folder is None:
        raise DataError(missing_data_message())
    return folder


def catalogue_entry(name: str) -> DataFile:
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    names = ", ".join(e.name for e in CATALOGUE)
    raise DataError(f"no public data file is called {name!r}; the catalogue holds: {names}.")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def status(entry: DataFile, folder: Path) -> str:
    """ "present" (the pinned bytes), "missing", or "differs" (a file of that name with other bytes)."""
    path = folder / entry.name
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
        return "differs"
    return "present"


def creation_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the umask (mkstemp would give 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


MIN_RATE = 20_000  # bytes per second a download may not stay below (a 20 MB model: 17 minutes)


def download(
    entry: DataFile, folder: Path, *, base_url: str = BASE_URL, timeout: float = 60.0, min_rate: float = MIN_RATE
) -> Path:
    """Fetch one catalogued file into `folder`, checked against its pinned size and SHA-256.

    The bytes stream into a fresh temporary file in `folder` (never a predictable name, never
    through a link); on any failure it is removed and nothing at `folder/entry.name` changes.
    `timeout` bounds each read; the whole download gets `timeout` plus its size at `min_rate`, so a
    server that trickles a byte at a time is stopped too.
    """
    url = urllib.parse.urljoin(base_url if base_url.endswith("/") else base_url + "/", entry.name)
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DataError(f"--base-url {base_url!r}: only http:// and https:// addresses are fetched.")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".part", dir=folder)
    try:
        digest, received = hashlib.sha256(), 0
        allowed = timeout + entry.size / min_rate
        deadline = time.monotonic() + allowed
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read1(CHUNK):  # what one receive brought: the deadline is checked often
                if time.monotonic() > deadline:
                    raise DataError(
                        f"{url} sent {received:,} of the {entry.size:,} bytes of {entry.name} in {allowed:.0f} s, "
                        f"slower than {min_rate / 1000:g} kB/s; the download was stopped and nothing was written."
                    )
                received += len(chunk)
                if received > entry.size:
                    raise DataError(f"{url} sent more than the pinned {entry.size:,} bytes of {entry.name}; refused.")
                digest.update(chunk)
                out.write(chunk)
        if received != entry.size:
            raise DataError(
                f"{url} ended after {received:,} of the pinned {entry.size:,} bytes of {entry.name} (a truncated "
                "download); nothing was written. Run the fetch again."
            )
        if digest.hexdigest() != entry.sha256:
            raise DataError(
                f"{url} is not the pinned {entry.name}: SHA-256 {digest.hexdigest()} where {entry.sha256} was "
                "expected; nothing was written. The file may have changed upstream or the mirror is wrong."
            )
        os.chmod(tmp, creation_mode())
        os.replace(tmp, folder / entry.name)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, (urllib.error.URLError, OSError)) and not isinstance(err, DataError):
            reason = getattr(err, "reason", None) or err
            steps = offline_steps(folder)
            raise DataError(
                f"could not fetch {entry.name} from {url}: {reason}; nothing was written. Next: {steps}."
            ) from None
        raise
    return folder / entry.name


def fetch(
    dest: str | os.PathLike | None = None,
    names: Iterable[str] | None = None,
    *,
    base_url: str = BASE_URL,
    report: Callable[[str], None] = lambda line: None,
) -> Path:
    """Put every catalogued file (or those named) into `dest` (default `cache_dir()`), downloading
    only those missing; a file already there with other bytes is an error, never overwritten.
    Returns the folder."""
    folder = Path(dest) if dest is not None else cache_dir()
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--dest {str(folder)!r} is a file; give a folder (it is created if missing).")
    entries = [catalogue_entry(n) for n in names] if names is not None else list(CATALOGUE)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # what a failed first download must not leave
    try:
        _fetch_entries(entries, folder, base_url, report)
    except BaseException:
        for path in created:  # innermost first; only folders this fetch made and that stayed empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    return folder


def _fetch_entries(entries: list[DataFile], folder: Path, base_url: str, report: Callable[[str], None]) -> None:
    for entry in entries:
        state = status(entry, folder)
        if state == "differs":
            raise DataError(
                f"{folder / entry.name} exists with other bytes than the pinned {entry.name} (SHA-256 "
                f"{entry.sha256}); move it away and fetch again. Nothing was overwritten."
            )
        if state == "present":
            report(f"present  {entry.name}")
            continue
        download(entry, folder, base_url=base_url)
        report(f"fetched  {entry.name} ({entry.size:,} bytes, SHA-256 checked)")


def missing_data_message(folder: Path | None = None) -> str:
    """The one line to show when the real data is not found."""
    looked = "; ".join(f"{why}: {where}" for why, where in lookup_order()) if folder is None else str(folder)
    return (
        f"the real models and images are not found (looked in {looked}): run `npmnv2 data fetch` (downloads them "
        f"into {cache_dir()}, each checked against its pinned SHA-256) or set NPMNV2_DATA to a folder holding them."
    )


def offline_steps(folder: Path) -> str:
    """What to do when the public source cannot be reached."""
    return (
        f"offline, copy the files (`npmnv2 data list` names them; their SHA-256 is pinned in the package) into "
        f"{folder}, set NPMNV2_DATA to a folder that already holds them, or give --base-url a mirror you can reach"
    )
