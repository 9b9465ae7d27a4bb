"""Per-corpus UAR of each model as grouped bars with each corpus's chance line, from a CSV of
the figures in docs/results.md (``model,corpus,uar,chance``: UAR and chance in %, one row per
model and corpus, fold means): docs/figures/crosscorpus_models.png.

    python docs/probes/crosscorpus_figure.py docs/figures/crosscorpus_models.csv \
        -o docs/figures/crosscorpus_models.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from liser.plots import corpus_bars_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--title", default="UAR by corpus (fold means; dashed: chance)")
    args = parser.parse_args()
    df = pd.read_csv(args.table)
    uar = {
        m: dict(zip(g["corpus"], g["uar"] / 100, strict=True))
        for m, g in df.groupby("model", sort=False)
    }
    chance = dict(zip(df["corpus"], df["chance"] / 100, strict=True))
    args.output.write_bytes(corpus_bars_png(uar, chance, args.title))
    print(f"{len(uar)} models x {len(chance)} corpora -> {args.output}")


if __name__ == "__main__":
    main()
