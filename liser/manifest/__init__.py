"""liser.manifest: the public face of this stage (what other modules use)."""

from .corpora import (
    CREMAD_LEVELS,
    CREMAD_SENTENCES,
    cremad_manifest,
    folder_manifest,
    parse_cremad_name,
    parse_ravdess_name,
    ravdess_manifest,
    videos_manifest,
)
from .emobox import emobox_export, emobox_import
from .schema import (
    ManifestError,
    corpus_classes,
    make_manifest,
    manifest_problems,
    manifest_report,
    normalize_manifest,
    read_manifest,
    save_manifest,
    validate_manifest,
    write_manifest,
)
from .splits import (
    check_speakers_disjoint,
    resolve_folds,
    speaker_folds,
    speaker_halves,
    split_fold,
)
from .table import table_manifest

__all__ = [
    "CREMAD_LEVELS",
    "CREMAD_SENTENCES",
    "ManifestError",
    "check_speakers_disjoint",
    "corpus_classes",
    "cremad_manifest",
    "emobox_export",
    "emobox_import",
    "folder_manifest",
    "make_manifest",
    "manifest_problems",
    "manifest_report",
    "normalize_manifest",
    "parse_cremad_name",
    "parse_ravdess_name",
    "ravdess_manifest",
    "read_manifest",
    "resolve_folds",
    "save_manifest",
    "speaker_folds",
    "speaker_halves",
    "split_fold",
    "table_manifest",
    "validate_manifest",
    "videos_manifest",
    "write_manifest",
]
