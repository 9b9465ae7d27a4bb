"""Scoring a model on a corpus whose classes differ from the model's.

Two rules, stated in every report that uses them:

- ``mapping`` renames classes, on both sides: ``calm=neutral`` makes a corpus's "calm" clips
  "neutral" clips and adds the model's "calm" probability to its "neutral"; ``boredom=`` (an
  empty target) drops that class: its clips are not scored and the model's class is not chosen.
- the model's argmax is restricted to the scored classes: the corpus's classes after mapping
  (or ``classes`` when given, e.g. the 4-class protocol angry, happy, neutral, sad as EmoBox's
  cross-corpus benchmark uses it), so a model with 8 classes scored on a 4-class corpus chooses
  among those 4. Clips whose class the model has no class for are dropped and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

FOUR_CLASSES = ("angry", "happy", "neutral", "sad")  # EmoBox's cross-corpus protocol


@dataclass(frozen=True)
class ClassRules:
    """How a corpus's classes are scored: ``classes`` (None: each corpus's own), ``mapping``
    (``parse_mapping``) and whether the argmax is restricted to the scored classes."""

    classes: tuple[str, ...] | None = None
    mapping: dict = field(default_factory=dict)
    restrict: bool = True


def parse_mapping(items: Iterable[str] | dict | None) -> dict[str, str | None]:
    """``["calm=neutral", "boredom="]`` (or a dict) -> {"calm": "neutral", "boredom": None}."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k).strip().lower(): (str(v).strip().lower() or None) if v else None
                for k, v in items.items()}  # fmt: skip
    mapping: dict[str, str | None] = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"class mapping {part!r} is not of the form from=to (or from=)")
            source, target = (s.strip().lower() for s in part.split("=", 1))
            if not source:
                raise ValueError(f"class mapping {part!r} has no class to map")
            mapping[source] = target or None
    return mapping


@dataclass
class ClassScoring:
    """How one corpus is scored: ``classes`` (the scored classes, in order), ``columns`` (for each
    scored class, the model's output columns summed into it), and what was dropped."""

    classes: tuple[str, ...]  # the argmax's classes
    columns: list[list[int]]
    labels: tuple[str, ...] = ()  # the classes whose clips are scored (= classes if restricted)
    mapping: dict[str, str | None] = field(default_factory=dict)
    dropped_labels: dict[str, int] = field(default_factory=dict)  # label -> clips not scored
    restricted: bool = True

    def describe(self) -> str:
        """One line for reports: the mapping, the classes scored and what was dropped."""
        parts = [f"classes scored: {', '.join(self.labels)}"]
        if self.mapping:
            shown = [f"{k}={v or ''}" for k, v in sorted(self.mapping.items())]
            parts.append(f"mapping: {', '.join(shown)}")
        if self.dropped_labels:
            shown = [f"{k} ({n})" for k, n in sorted(self.dropped_labels.items())]
            parts.append(f"clips not scored: {', '.join(shown)}")
        parts.append("argmax restricted to them" if self.restricted else "argmax over all classes")
        return "; ".join(parts)

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Model probabilities (N, C_model) -> (N, len(classes)): mapped columns summed."""
        probs = np.asarray(probs, dtype=np.float64)
        return np.stack([probs[:, cols].sum(1) for cols in self.columns], axis=1)


def class_scoring(
    model_classes: Sequence[str],
    labels: Iterable[str],
    mapping: dict[str, str | None] | None = None,
    classes: Sequence[str] | None = None,
    restrict: bool = True,
) -> ClassScoring:
    """The ``ClassScoring`` of a corpus with ``labels`` for a model with ``model_classes``.

    ``classes``: the classes to score (default: the corpus's labels after mapping, in the model's
    order); labels outside them, or that the model has no class for, are dropped. With
    ``restrict=False`` the argmax runs over all of the model's (mapped) classes, and a clip whose
    prediction is a class outside the scored ones counts as wrong."""
    mapping = dict(mapping or {})

    def rename(name: str) -> str | None:
        name = name.lower()
        return mapping[name] if name in mapping else name

    model_mapped = [rename(c) for c in model_classes]
    offered = list(dict.fromkeys(c for c in model_mapped if c))  # model order, mapped, no drops
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    present = {rename(label) for label in counts} - {None}
    if classes:
        wanted = [rename(c) or c for c in classes]
        unknown = [c for c in wanted if c not in offered]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not among the model's classes {list(model_classes)} "
                "(after mapping); map them with --map, e.g. calm=neutral"
            )
    else:
        wanted = [c for c in offered if c in present]
    if not wanted:
        raise ValueError(
            f"no class of the corpus ({sorted(counts)}) is among the model's classes "
            f"{list(model_classes)}; map them with --map, e.g. anger=angry"
        )
    scored = wanted if restrict else offered
    columns = [[i for i, c in enumerate(model_mapped) if c == target] for target in scored]
    dropped = {label: n for label, n in counts.items() if rename(label) not in wanted}
    return ClassScoring(tuple(scored), columns, tuple(wanted), mapping, dropped, restrict)


def scored_label(scoring: ClassScoring, label: str) -> str | None:
    """The class a corpus label is scored as, or None when its clips are not scored."""
    key = label.lower()
    target = scoring.mapping[key] if key in scoring.mapping else key
    return target if target in scoring.labels else None
