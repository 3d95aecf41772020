"""Reading and writing nurec events and predictions."""

from nurec.io.parquet import (
    DatasetError,
    DatasetWriter,
    events_from_hits_dataframe,
    iter_dataset,
    read_dataset,
    read_manifest,
    read_metadata,
    write_dataset,
)
from nurec.io.predictions import read_predictions, write_predictions
from nurec.io.schema import (
    PREDICTION_COLUMNS,
    SchemaError,
    event_problems,
    validate_events,
)

__all__ = [
    "PREDICTION_COLUMNS",
    "DatasetError",
    "DatasetWriter",
    "SchemaError",
    "event_problems",
    "events_from_hits_dataframe",
    "iter_dataset",
    "read_dataset",
    "read_manifest",
    "read_metadata",
    "read_predictions",
    "validate_events",
    "write_dataset",
    "write_predictions",
]
