"""The soft-label store: a folder of Parquet shards of windows with the teachers' soft labels.

``layout.py``: the layout, schema, header (store.json) and reading (``open_store``);
``shards.py``: writing shards atomically, completed clips, repair after a crash.
"""

from .layout import (
    HEADER,
    SCHEMA,
    SHARDS,
    TEACHER_COLUMNS,
    SoftLabelStore,
    StoreError,
    check_frontend,
    check_unique_windows,
    frontend_differences,
    header_frontend,
    new_header,
    open_store,
    read_header,
    read_shard,
    shard_paths,
    write_header,
)
from .shards import ShardWriter, done_clips, repair_store, shard_complete, write_shard

__all__ = [
    "HEADER", "SCHEMA", "SHARDS", "TEACHER_COLUMNS", "ShardWriter", "SoftLabelStore", "StoreError",
    "check_frontend", "check_unique_windows", "done_clips", "frontend_differences",
    "header_frontend", "new_header", "open_store", "read_header", "read_shard", "repair_store",
    "shard_complete", "shard_paths", "write_header", "write_shard",
]  # fmt: skip
