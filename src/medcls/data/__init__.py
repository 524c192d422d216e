"""Data: sources → records → splits → decode cache → transforms → datamodule."""

from medcls.data.records import DataError, Record

__all__ = ["DataError", "Record"]
