"""Inputs that are not regular files: a FIFO, a character device, a socket, symbolic link loops.
Each is refused at once with one line, before --out is touched. Every run here is a subprocess
under a timeout, so a regression (a read that waits on a pipe or never ends) fails the test in
seconds instead of hanging the suite."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from preprocess.blocks import read_blocks
from preprocess.errors import InputError
from preprocess.inputs import InputFile, Unit
from tests.helpers import documents, write_lines

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 30  # a guard against a hang, not a timing assertion: a refusal takes well under a second


def _refused(tmp_path: Path, tokenizer_dir: Path, *inputs: Path, code: int | None = None) -> str:
    out = tmp_path / "out"
    try:
        r = subprocess.run([sys.executable, "-m", "preprocess", *map(str, inputs), "--tokenizer", str(tokenizer_dir),
                            "--out", str(out), "--workers", "0", "-q"], cwd=ROOT, capture_output=True, text=True,
                           timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"preprocess {' '.join(map(str, inputs))} hung")
    assert r.returncode != 0 and (code is None or r.returncode == code), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()  # refused before the output directory was created
    return lines[0]


def test_fifo_is_refused(tmp_path, tokenizer_dir):
    fifo = tmp_path / "stream.txt"
    os.mkfifo(fifo)
    line = _refused(tmp_path, tokenizer_dir, fifo, code=2)
    assert line.startswith(f"error: {fifo}: a named pipe (FIFO), not a regular file")
    assert "write the stream to a file first" in line
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "dir" / "part.jsonl")  # inside a directory, named like an input
    write_lines(tmp_path / "dir" / "a.txt", ["x"])
    assert "dir/part.jsonl: a named pipe (FIFO)" in _refused(tmp_path, tokenizer_dir, tmp_path / "dir", code=2)


def test_fifo_without_an_input_name_in_a_directory_is_ignored(tmp_path, tokenizer_dir, corpus_lines):
    write_lines(tmp_path / "in" / "a.txt", corpus_lines[:20])
    os.mkfifo(tmp_path / "in" / "control")  # not named like an input: ignored, never opened
    try:
        r = subprocess.run([sys.executable, "-m", "preprocess", str(tmp_path / "in"), "--tokenizer",
                            str(tokenizer_dir), "--out", str(tmp_path / "ds"), "--workers", "0"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("preprocess hung on a FIFO it should have ignored")
    assert r.returncode == 0, r.stderr
    assert "ignored 1 file(s)" in r.stderr and len(documents(tmp_path / "ds")) == 20


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_character_device_is_refused(tmp_path, tokenizer_dir):
    line = _refused(tmp_path, tokenizer_dir, Path("/dev/zero"), code=2)
    assert line == "error: /dev/zero: a character device, not a regular file; preprocess reads regular files only"
    link = tmp_path / "zeros.txt"  # named like an input, so the name alone does not stop it
    link.symlink_to("/dev/zero")
    assert f"{link}: a character device" in _refused(tmp_path, tokenizer_dir, link, code=2)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "zeros.parquet").symlink_to("/dev/zero")
    assert "dir/zeros.parquet: a character device" in _refused(tmp_path, tokenizer_dir, tmp_path / "dir")


def test_socket_is_refused(tmp_path, tokenizer_dir):
    path = tmp_path / "s.txt"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        line = _refused(tmp_path, tokenizer_dir, path, code=2)
    assert line == f"error: {path}: a socket, not a regular file; preprocess reads regular files only"


@pytest.mark.parametrize("name", ["state.json", "dataset_dict.json"])
def test_a_fifo_as_a_save_to_disk_description_is_refused(tmp_path, tokenizer_dir, corpus_lines, name):
    """The files that say a directory is a `datasets` save_to_disk one are read before any input:
    a FIFO under such a name is refused like a FIFO input, never opened for a blocking read."""
    write_lines(tmp_path / "in" / "a.txt", corpus_lines[:5])
    os.mkfifo(tmp_path / "in" / name)
    try:
        line = _refused(tmp_path, tokenizer_dir, tmp_path / "in", code=2)
    finally:
        try:  # a reader stuck in open() is released by a writer arriving
            os.close(os.open(tmp_path / "in" / name, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert line.startswith(f"error: {tmp_path / 'in'}/{name}: a named pipe (FIFO), not a regular file")


def test_a_directory_named_like_a_save_to_disk_description_is_only_a_directory(tmp_path, tokenizer_dir,
                                                                                corpus_lines):
    from tests.helpers import preprocess_cli

    write_lines(tmp_path / "in" / "a.txt", corpus_lines[:5])
    write_lines(tmp_path / "in" / "state.json" / "b.txt", corpus_lines[5:8])
    r = preprocess_cli(tmp_path / "in", "--tokenizer", tokenizer_dir, "--out", tmp_path / "ds", "--workers", 0, "-q")
    assert r.exit_code == 0, r.output
    assert len(documents(tmp_path / "ds")) == 8


def test_link_back_to_a_directory_above_is_refused(tmp_path, tokenizer_dir, corpus_lines):
    root = tmp_path / "corpus"
    write_lines(root / "a.txt", corpus_lines[:5])
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    line = _refused(tmp_path, tokenizer_dir, root, code=1)
    assert line.startswith(f"error: {root}/sub/up: a symbolic link loop (it leads back to a directory above it)")


@pytest.mark.parametrize("names", [("self.txt", "self.txt"), ("one", "two")])
def test_link_loop_files_are_refused(tmp_path, tokenizer_dir, corpus_lines, names):
    root = tmp_path / "corpus"
    write_lines(root / "a.txt", corpus_lines[:5])
    a, b = names
    (root / a).symlink_to(b)
    if a != b:
        (root / b).symlink_to(a)
    line = _refused(tmp_path, tokenizer_dir, root, code=1)
    assert line == f"error: {root}/{a}: a symbolic link loop; remove the link or name the files you mean"
    assert _refused(tmp_path, tokenizer_dir, root / a, code=1) == \
        f"error: {root / a}: a symbolic link loop; remove the link or name the files you mean"


def test_links_to_directories_are_followed_once(tmp_path, tokenizer_dir, corpus_lines):
    """Not loops: two links to one directory elsewhere. Its files are read once."""
    from click.testing import CliRunner

    from preprocess.cli import main

    shared = tmp_path / "disk2" / "shared"
    write_lines(shared / "b.txt", corpus_lines[5:10])
    root = tmp_path / "corpus"
    write_lines(root / "a.txt", corpus_lines[:5])
    (root / "x").symlink_to(shared)
    (root / "y").symlink_to(shared)
    r = CliRunner().invoke(main, [str(root), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path / "ds"),
                                  "--workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    assert len(documents(tmp_path / "ds")) == 10


def test_a_dangling_link_named_like_an_input_is_refused(tmp_path, tokenizer_dir, corpus_lines):
    root = tmp_path / "snapshot"
    write_lines(root / "a.txt", corpus_lines[:5])
    (root / "train-00001.parquet").symlink_to("../blobs/missing")  # a download that never finished
    (root / "stale.lock").symlink_to("gone")  # named like no input: ignored
    line = _refused(tmp_path, tokenizer_dir, root, code=1)
    assert line == f"error: {root}/train-00001.parquet: a symbolic link to a missing file (an incomplete download or copy?)"


def _guarded(fn, what: str) -> BaseException | None:
    """Run fn in a thread; fail if it is still running after GUARD_S (then unblock it)."""
    box: list[BaseException | None] = [None]

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box[0] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(GUARD_S)
    if t.is_alive():
        pytest.fail(f"{what} hung")
    return box[0]


@pytest.mark.parametrize("fmt", ["txt", "parquet"])
def test_the_reader_refuses_a_fifo_swapped_in_after_listing(tmp_path, fmt):
    """Between listing the inputs and reading them, a file became a FIFO: the reader says so
    instead of waiting for a writer that never comes."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    fifo = tmp_path / f"f.{fmt}"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    f = InputFile(fifo, fifo.name, 100, fmt, None)
    if fmt == "txt":
        run = lambda: list(read_blocks([f], [Unit(0, 0, None)], 0, max_doc_bytes=1024))  # noqa: E731
    else:
        from preprocess.columnar import read_rows

        run = lambda: list(read_rows([f], [Unit(0, 0, None)], 0, text_key="text", block_bytes=1024))  # noqa: E731
    try:
        error = _guarded(run, f"reading a FIFO as {fmt}")
    finally:
        try:  # a reader stuck in open() is released by a writer arriving
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert isinstance(error, InputError) and "not a regular file" in str(error)
