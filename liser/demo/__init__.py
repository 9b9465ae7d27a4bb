"""``liser demo``: a procedural audio-visual emotion corpus and the whole method run on it.

``write_corpus(dir, size, seed)`` renders the corpus (wav + mp4 files and manifests);
``run_demo(out_dir, size, seed)`` runs teachers, labeling, both students, evaluation and the report.
"""

from .corpus import CLASSES, SIZES, write_corpus
from .pipeline import SETTINGS, run_demo

__all__ = ["CLASSES", "SETTINGS", "SIZES", "run_demo", "write_corpus"]
