"""The shipped default model and photos, and `npmnv2 data fetch` / `data list`, tested against a
local HTTP server on 127.0.0.1 that serves the shared files (no test reaches the internet)."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import npmnv2
from npmnv2 import data_files
from npmnv2.data_files import CATALOGUE, DataError, catalogue_entry, fetch

SMALL = ["pascal_voc_segmentation_labels.txt", "COPYRIGHT", "cat.bmp"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `broken` maps a file name to what to do instead: "truncate" (declare the
    full length, send half, then hang up), "corrupt" (the full length, one byte changed) or "trickle"
    (a byte every 50 ms)."""

    broken: ClassVar[dict[str, str]] = {}

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        how = self.broken.get(name)
        if how is None:
            return super().do_GET()
        payload = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if how == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if how == "trickle":  # one byte at a time, each well within the per-read timeout
            for byte in payload[:200]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(payload[:-1] + bytes([payload[-1] ^ 0xFF]))


@pytest.fixture
def server(coral_dir):
    """http://127.0.0.1:PORT/ serving the shared data folder; yields (url, broken-files dict)."""
    broken: dict[str, str] = {}
    handler = type("Handler", (_Handler,), {"broken": broken})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(coral_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", broken
    finally:
        httpd.shutdown()
        httpd.server_close()


def _cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "npmnv2.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


# ============================================================================ shipped


def test_the_package_ships_the_default_model_its_labels_license_and_two_small_photos():
    folder = data_files.default_model_path().parent
    names = {p.name for p in folder.iterdir()}
    shipped = {"mobilenet_v2_1.0_224_quant.tflite", "imagenet_labels.txt", "LICENSE", "cat.jpg", "grace_hopper.jpg"}
    assert shipped <= names
    photos = sum((folder / f"{n}.jpg").stat().st_size for n in data_files.SAMPLE_IMAGES)
    assert photos < 1_000_000
    pinned = catalogue_entry(data_files.DEFAULT_MODEL_FILE).sha256
    assert data_files.file_sha256(data_files.default_model_path()) == pinned


def test_npmnv2_default_loads_the_embedded_classifier_and_its_preprocessing():
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default")
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained("npmnv2/default")
    logits = model(**processor(data_files.sample_image("cat"))).logits
    assert model.config.id2label[int(np.argmax(logits))] == "Egyptian cat"
    quantized = npmnv2.QuantizedMobileNetV2.from_pretrained("npmnv2/default")
    assert quantized.graph.ops  # the integer model takes the same name


def test_an_unknown_sample_photo_names_the_shipped_ones():
    with pytest.raises(ValueError, match="cat, grace_hopper"):
        data_files.sample_image("dog")


# ============================================================================ fetch


def test_fetch_downloads_the_pinned_bytes_from_the_server(server, tmp_path, coral_dir):
    url, _ = server
    lines: list[str] = []
    fetch(tmp_path / "cache", SMALL, base_url=url, report=lines.append)
    for name in SMALL:
        assert (tmp_path / "cache" / name).read_bytes() == (coral_dir / name).read_bytes()
    assert [line.split()[0] for line in lines] == ["fetched"] * 3
    again: list[str] = []
    fetch(tmp_path / "cache", SMALL, base_url=url, report=again.append)  # nothing downloaded twice
    assert [line.split()[0] for line in again] == ["present"] * 3


def test_fetched_files_get_the_umasks_mode(server, tmp_path):
    url, _ = server
    old = os.umask(0o022)
    try:
        fetch(tmp_path, ["COPYRIGHT"], base_url=url)
    finally:
        os.umask(old)
    assert (tmp_path / "COPYRIGHT").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("how,message", [("corrupt", "is not the pinned"), ("truncate", "fetch")])
def test_a_wrong_or_truncated_download_is_refused_and_nothing_is_written(server, tmp_path, how, message):
    url, broken = server
    broken["cat.bmp"] = how
    with pytest.raises(DataError, match=message) as error:
        fetch(tmp_path, ["cat.bmp"], base_url=url)
    assert "nothing was written" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary left behind


def test_a_server_that_trickles_is_stopped_by_the_whole_downloads_deadline(server, tmp_path):
    """Round 3: a trickling download never timed out (the timeout was per read)."""
    url, broken = server
    broken["cat.bmp"] = "trickle"
    entry = catalogue_entry("cat.bmp")
    started = time.monotonic()
    with pytest.raises(DataError, match=r"slower than 1,?000 kB/s; the download was stopped") as error:
        data_files.download(entry, tmp_path, base_url=url, timeout=1.0, min_rate=1e6)
    assert time.monotonic() - started < 5  # 1 s plus the file's size at 1 MB/s, not the whole trickle
    assert "nothing was written" in str(error.value) and list(tmp_path.iterdir()) == []


def test_a_file_with_other_bytes_is_never_overwritten(server, tmp_path):
    url, _ = server
    (tmp_path / "COPYRIGHT").write_text("mine")
    with pytest.raises(DataError, match="other bytes"):
        fetch(tmp_path, ["COPYRIGHT"], base_url=url)
    assert (tmp_path / "COPYRIGHT").read_text() == "mine"


def test_only_http_addresses_are_fetched(tmp_path):
    with pytest.raises(DataError, match="only http"):
        fetch(tmp_path, ["COPYRIGHT"], base_url="file:///etc/")


def test_an_unknown_file_name_lists_the_catalogue(tmp_path):
    with pytest.raises(DataError, match=r"cat\.bmp"):
        fetch(tmp_path, ["nope.tflite"])


def test_data_fetch_and_list_on_the_command_line(server, tmp_path):
    url, _ = server
    dest = tmp_path / "coral"
    listed = _cli("data", "list", "--dest", dest)
    assert listed.returncode == 0, listed.stderr
    assert all(entry.name in listed.stdout for entry in CATALOGUE) and "missing" in listed.stdout
    assert "Apache-2.0" in listed.stdout and "CC BY 2.0" in listed.stdout
    run = _cli("data", "fetch", *SMALL, "--dest", dest, "--base-url", url)
    assert run.returncode == 0, run.stderr
    assert "all 3 files are in" in run.stdout
    after = _cli("data", "list", "--dest", dest)
    assert sum(line.split()[1] == "present" for line in after.stdout.splitlines()[2:-2]) == 3


def test_the_whole_catalogue_fetched_runs_the_data_the_tests_need(server, tmp_path):
    url, _ = server
    dest = fetch(tmp_path / "all", base_url=url)
    assert {p.name for p in dest.iterdir()} == {e.name for e in CATALOGUE}
    model = npmnv2.MobileNetV2ForSemanticSegmentation.from_pretrained(dest / "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    assert model.config.num_labels == 21


def test_the_tests_stop_with_one_line_naming_data_fetch_when_the_data_is_missing(tmp_path):
    """The tests copied into a project, with $NPMNV2_DATA naming a folder without the data (used
    alone, as the library uses it): one line, naming `npmnv2 data fetch`."""
    from conftest import PROJECT_ROOT

    tests = tmp_path / "project" / "tests"
    tests.mkdir(parents=True)
    for name in ("conftest.py", "test_trace.py"):
        (tests / name).write_bytes((PROJECT_ROOT / "tests" / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "NPMNV2_DATA"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"), NPMNV2_DATA=str(tmp_path / "no-data"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    output = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode == 4, output
    assert len(output) == 1 and "npmnv2 data fetch" in output[0], output
