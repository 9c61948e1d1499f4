"""The Parquet export: every record as one row, written in row groups as the records stream
by. pyarrow comes with the `ray` extra; without it the audit skips this file and says so."""

from __future__ import annotations

import importlib.util
import json
import logging
from types import TracebackType
from typing import Any, BinaryIO

from cnnlens.audit.records import OPTIONAL_COLUMNS, AuditRecord
from cnnlens.features.columns import COLUMN_TYPES

logger = logging.getLogger(__name__)

PARQUET = "results.parquet"
ROW_GROUP = 4096  # rows held before a row group is written

# Scalar fields as typed columns; the nested ones (maps, predictions, overlays) and the
# optional columns as JSON text.
_TYPES = {
    "index": "int64", "name": "string", "status": "string", "error": "string",
    "width": "int64", "height": "int64", "label": "int64", "label_name": "string",
    "predicted": "int64", "predicted_name": "string", "confidence": "float64",
    "correct": "bool_", "layer": "string", "has_region": "bool_", "fragility_tested": "bool_",
    "fragile_epsilon": "float64", "fragile_class": "int64", "fragile_class_name": "string",
    "fragile_probability": "float64", **COLUMN_TYPES,
}  # fmt: skip
_NESTED = (
    "maps", "predictions", "overlays", *(c for c in OPTIONAL_COLUMNS if c not in COLUMN_TYPES)
)  # fmt: skip

_warned = False


def parquet_available() -> bool:
    """Whether pyarrow is installed; logs once where it is not."""
    global _warned
    found = importlib.util.find_spec("pyarrow") is not None
    if not found and not _warned:
        logger.warning(
            "pyarrow is not installed: %s is skipped (pip install cnnlens[ray])", PARQUET
        )
        _warned = True
    return found


class ParquetRows:
    """A Parquet file written to `sink` a row group at a time."""

    def __init__(self, sink: BinaryIO) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        fields = [pa.field(name, getattr(pa, kind)()) for name, kind in _TYPES.items()]
        fields.append(pa.field("flags", pa.list_(pa.string())))
        fields += [pa.field(name, pa.string()) for name in _NESTED]
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(sink, self.schema)
        self._pending: list[dict[str, Any]] = []

    def add(self, record: AuditRecord) -> None:
        stored = record.to_json()
        row = {name: stored.get(name) for name in _TYPES}
        row["flags"] = list(record.flags)
        for name in _NESTED:
            value = stored.get(name)
            row[name] = None if value is None else json.dumps(value)
        self._pending.append(row)
        if len(self._pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = self._pa.Table.from_pylist(self._pending, schema=self.schema)
            self._writer.write_table(table, row_group_size=ROW_GROUP)
            self._pending = []

    def __enter__(self) -> ParquetRows:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self._flush()
        self._writer.close()
