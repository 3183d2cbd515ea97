"""The on-disk dataset contract: layout, manifest, writer, read-only reader, verification."""

from shards.errors import IncompleteDatasetError, ShardFormatError, UsageError
from shards.hashing import fingerprint, tokenizer_sha256
from shards.layout import FORMAT_NAME, FORMAT_VERSION, MANIFEST, TOKENIZER_DIR, dtype_for_vocab
from shards.manifest import Manifest, ShardEntry, load_manifest
from shards.reader import Dataset
from shards.verify import Problem, verify
from shards.writer import DatasetWriter

__version__ = "0.1.0"

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "TOKENIZER_DIR",
    "Dataset", "DatasetWriter", "IncompleteDatasetError", "Manifest", "Problem", "ShardEntry",
    "ShardFormatError", "UsageError", "__version__", "dtype_for_vocab", "fingerprint",
    "load_manifest", "tokenizer_sha256", "verify",
]
