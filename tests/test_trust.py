"""Confinement: every name in a manifest stays inside its dataset directory, for every reader.

Each malicious variant below would work against a reader that trusts the manifest: the file it
points at has the size, header and (for the tokenizer) the hash the manifest expects. Every
reader must refuse it in one line naming the entry, and must not have opened anything outside
the dataset directory (tests/open_spy.py watches through Python's audit hooks).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shards import Dataset, ShardFormatError, load_manifest, verify
from tests.helpers import assert_clean_error, shards_cli
from tests.open_spy import opened, outside

EOS = 2


@pytest.fixture
def victim(make_dataset) -> Path:
    """Four shards of two 6-token documents each: equal sizes, so one shard can pose as another."""
    docs = [[10 + i, 11, 12, 13, 14, EOS] for i in range(8)]
    path = make_dataset(docs, shard_tokens=12, eos_id=EOS, name="ds")
    assert len({s.bytes for s in load_manifest(path).shards}) == 1 and len(load_manifest(path).shards) == 4
    return path


def _edit(ds: Path, change: Callable[[dict], None]) -> None:
    m = json.loads((ds / "manifest.json").read_text())
    change(m)
    (ds / "manifest.json").write_text(json.dumps(m))


def _secret_copy(ds: Path, src: str, dst: Path) -> Path:
    """A file outside the dataset with exactly the bytes the manifest expects."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ds / src, dst)
    return dst


def _set(i: int, key: str, value) -> Callable[[dict], None]:
    return lambda m: m["shards"][i].__setitem__(key, value)


# -- the variants: each returns the text the refusal must contain -----------------------------

def absolute_shard(ds: Path, out: Path) -> str:
    _edit(ds, _set(0, "file", str(_secret_copy(ds, "shard_00000.npy", out / "secret.npy"))))
    return "shards[0].file"


def dotdot_shard(ds: Path, out: Path) -> str:
    _secret_copy(ds, "shard_00000.npy", ds.parent / "x.npy")
    _edit(ds, _set(0, "file", "../x.npy"))
    return "shards[0].file '../x.npy' leaves the directory"


def nested_shard(ds: Path, out: Path) -> str:
    _secret_copy(ds, "shard_00000.npy", ds / "sub" / "x.npy")
    _edit(ds, _set(0, "file", "sub/x.npy"))
    return "shards[0].file 'sub/x.npy' holds a path separator"


def duplicate_shard(ds: Path, out: Path) -> str:
    _edit(ds, _set(1, "file", "shard_00000.npy"))
    return "shards[1].file 'shard_00000.npy' is also shards[0].file"


def absolute_index(ds: Path, out: Path) -> str:
    _edit(ds, _set(2, "index_file", str(_secret_copy(ds, "shard_00002.docs.npy", out / "secret.docs.npy"))))
    return "shards[2].index_file"


def dotdot_index(ds: Path, out: Path) -> str:
    _secret_copy(ds, "shard_00000.docs.npy", ds.parent / "x.docs.npy")
    _edit(ds, _set(0, "index_file", "../x.docs.npy"))
    return "shards[0].index_file '../x.docs.npy' leaves the directory"


def nested_index(ds: Path, out: Path) -> str:
    _secret_copy(ds, "shard_00000.docs.npy", ds / "sub" / "x.docs.npy")
    _edit(ds, _set(0, "index_file", "sub/x.docs.npy"))
    return "shards[0].index_file 'sub/x.docs.npy' holds a path separator"


def duplicate_index(ds: Path, out: Path) -> str:
    _edit(ds, _set(3, "index_file", "shard_00001.docs.npy"))
    return "shards[3].index_file 'shard_00001.docs.npy' is also shards[1].index_file"


def index_names_a_shard(ds: Path, out: Path) -> str:
    _edit(ds, _set(1, "index_file", "shard_00000.npy"))
    return "shards[1].index_file 'shard_00000.npy' is also shards[0].file"


def absolute_tokenizer(ds: Path, out: Path) -> str:
    shutil.copytree(ds / "tokenizer", out / "tok")
    _edit(ds, lambda m: m["tokenizer"].__setitem__("dir", str(out / "tok")))
    return "tokenizer.dir"


def dotdot_tokenizer(ds: Path, out: Path) -> str:
    shutil.copytree(ds / "tokenizer", ds.parent / "tok")
    _edit(ds, lambda m: m["tokenizer"].__setitem__("dir", "../tok"))
    return "tokenizer.dir '../tok' leaves the directory"


def parent_as_tokenizer(ds: Path, out: Path) -> str:
    _edit(ds, lambda m: m["tokenizer"].__setitem__("dir", ".."))
    return "tokenizer.dir '..' leaves the directory"


def nested_tokenizer(ds: Path, out: Path) -> str:
    shutil.copytree(ds / "tokenizer", ds / "sub" / "tokenizer")
    _edit(ds, lambda m: m["tokenizer"].__setitem__("dir", "sub/tokenizer"))
    return "tokenizer.dir 'sub/tokenizer' holds a path separator"


def symlinked_shard(ds: Path, out: Path) -> str:
    secret = _secret_copy(ds, "shard_00001.npy", out / "secret.npy")
    (ds / "shard_00001.npy").unlink()
    (ds / "shard_00001.npy").symlink_to(secret)
    return f"{ds / 'shard_00001.npy'}: shards[1].file is a symlink to {secret}, outside the dataset directory"


def symlinked_index(ds: Path, out: Path) -> str:
    secret = _secret_copy(ds, "shard_00001.docs.npy", out / "secret.docs.npy")
    (ds / "shard_00001.docs.npy").unlink()
    (ds / "shard_00001.docs.npy").symlink_to(secret)
    return "shards[1].index_file is a symlink to"


def symlinked_tokenizer_dir(ds: Path, out: Path) -> str:
    shutil.move(ds / "tokenizer", out / "tok")  # same files: the tokenizer hash still matches
    (ds / "tokenizer").symlink_to(out / "tok", target_is_directory=True)
    return f"{ds / 'tokenizer'}: the tokenizer directory is a symlink to {out / 'tok'}"


def symlinked_tokenizer_file(ds: Path, out: Path) -> str:
    victim = ds / "tokenizer" / "tokenizer.json"
    shutil.move(victim, out / "tokenizer.json")  # same bytes: the tokenizer hash still matches
    victim.symlink_to(out / "tokenizer.json")
    return f"{victim}: a symlink to {out / 'tokenizer.json'}, outside"


def symlinked_manifest(ds: Path, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    shutil.move(ds / "manifest.json", out / "manifest.json")
    (ds / "manifest.json").symlink_to(out / "manifest.json")
    return "the manifest is a symlink to"


def fifo_shard(ds: Path, out: Path) -> str:
    (ds / "shard_00002.npy").unlink()
    os.mkfifo(ds / "shard_00002.npy")  # opening it would block the reader forever
    return "shards[2].file is not a regular file (a FIFO)"


VARIANTS = [absolute_shard, dotdot_shard, nested_shard, duplicate_shard, absolute_index, dotdot_index, nested_index,
            duplicate_index, index_names_a_shard, absolute_tokenizer, dotdot_tokenizer, parent_as_tokenizer,
            nested_tokenizer, symlinked_shard, symlinked_index, symlinked_tokenizer_dir, symlinked_tokenizer_file,
            symlinked_manifest, fifo_shard]


def _block_dataset(ds: Path) -> None:
    from train.dataset import BlockDataset

    BlockDataset(ds, 8)


LIBRARY_READERS = {"Dataset": Dataset, "verify": verify, "BlockDataset": _block_dataset}
CLI_READERS = {
    "info": lambda ds, tmp: ["info", ds],
    "info --json": lambda ds, tmp: ["info", ds, "--json"],
    "verify": lambda ds, tmp: ["verify", ds],
    "verify --tokenizer-roundtrip": lambda ds, tmp: ["verify", ds, "--tokenizer-roundtrip"],
    "inspect": lambda ds, tmp: ["inspect", ds, "--doc", 0],
    "export": lambda ds, tmp: ["export", ds, "--format", "nanogpt", "--out", tmp / "exported"],
    # A clean part first: the malicious one is refused wherever it comes in the list.
    "merge": lambda ds, tmp: ["merge", tmp / "clean", ds, "--out", tmp / "merged"],
}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("reader", LIBRARY_READERS, ids=str)
def test_library_readers_refuse(victim, tmp_path, variant, reader):
    (tmp_path / "outside").mkdir()
    expected = variant(victim, tmp_path / "outside")
    with opened() as seen:
        with pytest.raises(ShardFormatError) as e:
            LIBRARY_READERS[reader](victim)
    message = str(e.value)
    assert expected in message and "\n" not in message, message
    assert outside(seen, tmp_path, [victim]) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("command", CLI_READERS, ids=str)
def test_commands_refuse(victim, make_dataset, tmp_path, variant, command):
    (tmp_path / "outside").mkdir()
    clean = make_dataset([[20, 21, EOS]], eos_id=EOS, name="clean")
    expected = variant(victim, tmp_path / "outside")
    with opened() as seen:
        result = shards_cli(*CLI_READERS[command](victim, tmp_path))
    line = assert_clean_error(result, 1)
    assert expected in line
    assert outside(seen, tmp_path, [victim, clean]) == []
    assert not (tmp_path / "exported").exists() and not (tmp_path / "merged").exists()


def test_without_the_checks_the_attack_would_work(victim, tmp_path):
    """The variants are real attacks: read naively, the manifest leads outside and everything fits."""
    out = tmp_path / "outside"
    out.mkdir()
    symlinked_tokenizer_file(victim, out)
    absolute_shard(victim, out)
    m = json.loads((victim / "manifest.json").read_text())
    target = victim / m["shards"][0]["file"]
    assert target == out / "secret.npy"  # pathlib drops the dataset directory before an absolute name
    assert target.stat().st_size == m["shards"][0]["bytes"]
    assert len(np.load(target, mmap_mode="r")) == m["shards"][0]["num_tokens"]
    from shards.hashing import tokenizer_sha256

    assert tokenizer_sha256(victim / "tokenizer") == m["tokenizer"]["sha256"]  # the hash cannot tell


# -- what must keep working --------------------------------------------------------------------

def test_a_symlinked_dataset_directory_works(victim, tmp_path):
    """Teams link datasets into place: DIR itself a symlink, or under a symlinked parent."""
    (tmp_path / "link").symlink_to(victim, target_is_directory=True)
    (tmp_path / "parent").symlink_to(tmp_path, target_is_directory=True)
    for path in (tmp_path / "link", tmp_path / "parent" / "ds", tmp_path / "parent" / "link"):
        assert verify(path) == []
        assert Dataset(path).read(0, 6).tolist() == [10, 11, 12, 13, 14, EOS]
        r = shards_cli("verify", path)
        assert r.exit_code == 0, r.output
        r = shards_cli("inspect", path, "--doc", 1)
        assert r.exit_code == 0, r.output


def test_symlinks_that_stay_inside_are_followed(victim):
    """Decided: a symlink resolving inside the directory reads nothing foreign, so it is allowed
    (a shard into a store/ inside the dataset, the tokenizer directory to a sibling inside it)."""
    (victim / "store").mkdir()
    shutil.move(victim / "shard_00003.npy", victim / "store" / "s3.npy")
    (victim / "shard_00003.npy").symlink_to(Path("store") / "s3.npy")
    shutil.move(victim / "tokenizer", victim / "tok-v1")
    (victim / "tokenizer").symlink_to("tok-v1", target_is_directory=True)
    assert verify(victim) == []
    assert Dataset(victim).document(7).tolist() == [17, 11, 12, 13, 14, EOS]
    assert shards_cli("inspect", victim, "--doc", 7).exit_code == 0


def test_a_tokenizer_file_linking_elsewhere_in_the_dataset_is_refused(victim):
    """Inside the dataset but outside tokenizer/: the tokenizer may read only its own files."""
    (victim / "tokenizer" / "tokenizer.model").unlink()
    (victim / "tokenizer" / "tokenizer.model").symlink_to(victim / "shard_00000.npy")
    with pytest.raises(ShardFormatError, match="tokenizer.model: a symlink to .*, outside the tokenizer directory"):
        Dataset(victim)


def test_a_dangling_symlink_is_reported_as_missing(victim):
    (victim / "shard_00000.npy").unlink()
    (victim / "shard_00000.npy").symlink_to("gone.npy")
    assert [str(p) for p in verify(victim)] == [f"{victim / 'shard_00000.npy'}: missing"]


def test_merge_of_a_clean_part_still_works(victim, tmp_path):
    r = shards_cli("merge", victim, "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert verify(tmp_path / "merged") == []
