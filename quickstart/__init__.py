"""The bundled sample corpus and the quickstart tour: preprocess -> verify -> train -> sample."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "ja-libreoffice-help"

__all__ = ["CORPUS"]
