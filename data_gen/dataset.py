"""Read and check a dataset directory: its card, its parts' checksums, its statistics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from iklab.encodings import JOINT_COLUMNS, POSE_COLUMNS

from .generate import CARD_NAME, FORMAT, SPLITS, file_sha256


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
    return card


def verify(directory: str | Path, card: dict | None = None) -> dict:
    """Check every part's sha256 and row count against the card; returns the card."""
    directory = Path(directory)
    card = card or read_card(directory)
    total = 0
    for entry in card["files"]:
        path = directory / entry["name"]
        if not path.is_file():
            raise DatasetError(f"{path}: part listed in the card is missing")
        if file_sha256(path) != entry["sha256"]:
            raise DatasetError(f"{path}: sha256 mismatch, the file was changed after generation")
        total += entry["rows"]
    if total != card["n"]:
        raise DatasetError(f"{directory}: parts hold {total} rows, card says {card['n']}")
    return card


def iter_parts(directory: str | Path, columns: list[str] | None = None, card: dict | None = None) -> Iterator:
    """Yield each part as a pyarrow Table, in row order (one part in memory at a time)."""
    directory = Path(directory)
    card = card or read_card(directory)
    for entry in card["files"]:
        try:
            yield pq.read_table(directory / entry["name"], columns=columns)
        except (OSError, pq.lib.ArrowException) as exc:
            raise DatasetError(f"{directory / entry['name']}: unreadable part ({exc})") from None


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
        for value, count in zip(values, frequency):
            counts[str(value)] = counts.get(str(value), 0) + int(count)
    return counts
