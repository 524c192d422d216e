"""Small CSV helpers shared by the CSV-driven sources."""

from __future__ import annotations

import pandas as pd

from medcls.errors import DataError


def read_csv_columns(path: str, required: list[str]) -> pd.DataFrame:
    """Read ``path`` as strings; stop naming the file and the column if one is missing."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(
            f"cannot read CSV {path}: {e}. Check that it is a comma-separated text file."
        ) from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} has no column(s) {missing} (it has {list(df.columns)}). "
            "Fix the CSV header, or set the matching data.*_column option."
        )
    return df


def metadata_pairs(df: pd.DataFrame, columns) -> list[tuple[tuple[str, str], ...]]:
    """Per row of ``df``, the ``(column, value)`` pairs of those ``columns`` it has, empty
    values and "unknown" left out (HAM10000 writes "unknown" for a missing sex)."""
    present = [c for c in columns or () if c in df.columns]
    rows = zip(*(df[c] for c in present), strict=True) if present else ([()] * len(df))
    missing = {"", "unknown", "nan", "NaN", "None"}
    return [
        tuple((c, str(v)) for c, v in zip(present, row, strict=True) if str(v) not in missing)
        for row in rows
    ]
