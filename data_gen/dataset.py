"""Read and check a dataset directory: its card, its parts' checksums, its statistics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iklab.core.encodings import JOINT_COLUMNS, POSE_COLUMNS

from .generate import CARD_NAME, FORMAT, SPLITS, file_sha256

COLUMNS = [*JOINT_COLUMNS, *POSE_COLUMNS, "split"]


class DatasetError(ValueError):
    """A directory that is not a readable, intact iklab dataset."""


def read_card(directory: str | Path) -> dict:
    """The dataset's card; DatasetError if the directory is missing or not a dataset."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such dataset directory")
    card_path = directory / CARD_NAME
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{directory}: not a dataset (no {CARD_NAME})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{card_path}: unreadable card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise DatasetError(f"{card_path}: not an iklab dataset card (format != {FORMAT!r})")
    for key in ("robot", "region", "n", "seed", "files", "splits"):
        if key not in card:
            raise DatasetError(f"{card_path}: card lacks {key!r}")
    _check_card_shape(card, card_path)
    return card


def _check_card_shape(card: dict, card_path: Path) -> None:
    """The card's fields that code relies on have the types it relies on (else DatasetError)."""
    if not _is_count(card["n"]) or card["n"] < 1:
        raise DatasetError(f"{card_path}: 'n' must be a positive integer, got {card['n']!r}")
    files = card["files"]
    if not isinstance(files, list) or not files:
        raise DatasetError(f"{card_path}: 'files' must be a non-empty list of parts, got {type(files).__name__}")
    for index, entry in enumerate(files):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and entry["name"] == Path(entry["name"]).name
            and entry["name"] not in ("", "..")
            and _is_count(entry.get("rows"))
            and isinstance(entry.get("sha256"), str)
        )
        if not ok:
            raise DatasetError(
                f"{card_path}: files[{index}] must be {{name: a file name in the "
                f"dataset directory, rows: integer >= 0, sha256: string}}, "
                f"got {entry!r:.80}"
            )


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify(directory: str | Path, card: dict | None = None) -> dict:
    """Check each part's sha256, and its row count (Parquet footer) against the card; returns the card.

    The footer is read, not the data: cheap, and it catches a card whose counts were edited.
    """
    directory = Path(directory)
    card = card or read_card(directory)
    _check_card_shape(card, directory / CARD_NAME)
    total = 0
    for entry in card["files"]:
        path = directory / entry["name"]
        if not path.is_file():
            raise DatasetError(f"{path}: part listed in the card is missing")
        try:
            digest = file_sha256(path)
            metadata = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{path}: unreadable part ({str(exc).splitlines()[0]})") from None
        if digest != entry["sha256"]:
            raise DatasetError(f"{path}: sha256 mismatch, the file was changed after generation")
        if metadata.num_rows != entry["rows"]:
            raise DatasetError(
                f"{path}: holds {metadata.num_rows} rows, card says {entry['rows']}; "
                "the card was edited: regenerate the dataset"
            )
        missing = [c for c in COLUMNS if c not in metadata.schema.names]
        if missing:
            raise DatasetError(f"{path}: lacks column(s) {', '.join(missing)}")
        total += metadata.num_rows
    if total != card["n"]:
        raise DatasetError(
            f"{directory}: parts hold {total} rows, card says {card['n']}; the card was edited: regenerate the dataset"
        )
    return card


def iter_parts(directory: str | Path, columns: list[str] | None = None, card: dict | None = None) -> Iterator:
    """Yield each part as a pyarrow Table, in row order (one part in memory at a time)."""
    directory = Path(directory)
    card = card or read_card(directory)
    for entry in card["files"]:
        try:
            table = pq.read_table(directory / entry["name"], columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{directory / entry['name']}: unreadable part ({str(exc).splitlines()[0]})") from None
        yield table  # outside the try: an exception thrown in here belongs to the consumer


def column_stats(directory: str | Path, card: dict | None = None) -> dict[str, dict[str, float]]:
    """Per-column min / mean / max of the numeric columns, streamed part by part."""
    names = JOINT_COLUMNS + POSE_COLUMNS
    low = np.full(len(names), np.inf)
    high = np.full(len(names), -np.inf)
    total = np.zeros(len(names))
    rows = 0
    for table in iter_parts(directory, names, card):
        values = np.column_stack([table[c].to_numpy() for c in names])
        low, high = np.minimum(low, values.min(axis=0)), np.maximum(high, values.max(axis=0))
        total += values.sum(axis=0)
        rows += len(values)
    return {
        c: {"min": float(low[i]), "mean": float(total[i] / rows), "max": float(high[i])} for i, c in enumerate(names)
    }


def split_counts(directory: str | Path, card: dict | None = None) -> dict[str, int]:
    """Rows per split, counted from the data (not copied from the card)."""
    counts = dict.fromkeys(SPLITS, 0)
    for table in iter_parts(directory, ["split"], card):
        values, frequency = np.unique(table["split"].to_numpy(zero_copy_only=False).astype(str), return_counts=True)
        for value, count in zip(values, frequency, strict=True):
            counts[str(value)] = counts.get(str(value), 0) + int(count)
    return counts
