"""Tokenize a corpus once, in parallel worker processes, into a shards dataset directory."""

__all__ = ["PreprocessConfig", "run"]


def __getattr__(name: str):
    # Lazy: `preprocess --help` and worker start-up must not import transformers.
    if name == "PreprocessConfig":
        from preprocess.config import PreprocessConfig

        return PreprocessConfig
    if name == "run":
        from preprocess.pipeline import run

        return run
    raise AttributeError(name)
