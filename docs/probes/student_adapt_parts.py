"""Which part of a student's adaptation to a corpus helps or hurts: its front end's log-Mel
statistics, its BatchNorm statistics, or both (``liser.adapt.adapt_student(parts=...)``), per
corpus of a manifest. Not part of the package: a measurement for docs/results.md.

    python docs/probes/student_adapt_parts.py runs/base/fold-1/best runs/crosscorpus.parquet
"""

from __future__ import annotations

import argparse

import pandas as pd

from liser.adapt import DomainAudio, adapt_student
from liser.checkpoint import load_checkpoint, logmel_for
from liser.deploy.predictor import Predictor
from liser.evaluate import ClassRules
from liser.evaluate.corpora import score_manifest
from liser.manifest import read_manifest

PARTS = {"as trained": (), "log-Mel only": ("frontend",), "BatchNorm only": ("batchnorm",),
         "both": ("frontend", "batchnorm")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("manifest")
    args = parser.parse_args()
    df = read_manifest(args.manifest)
    for corpus, part in df.groupby("corpus"):
        scores = {}
        for name, parts in PARTS.items():
            model, meta = load_checkpoint(args.checkpoint)
            logmel = logmel_for(meta)
            audio = DomainAudio(part, 3.0, 1.0, model.frontend.pad, progress=False)
            if parts:
                adapt_student(model, logmel, audio, parts)
            stats = {"frontend_stats": logmel.global_stats()} if meta.get("frontend_stats") else {}
            predictor = Predictor(model, meta | stats, "cpu")
            scores[name] = score_manifest(predictor, part, str(corpus), ClassRules(), False)["uar"]
        print(corpus, "  ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()), flush=True)


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    main()
