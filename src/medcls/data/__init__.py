"""Data: sources → records → splits → decode cache → transforms → datamodule."""

from medcls.data.records import Record
from medcls.errors import DataError

__all__ = ["DataError", "Record"]
