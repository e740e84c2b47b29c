"""The reference database: registered originals (SQLite or PostgreSQL, the source of
truth), FAISS-backed Hamming indexes derived from it, and per-method decisions."""

from .index import HammingIndex, IndexConfig
from .ingest import Admission, Examined, examine
from .reference import AddReport, Match, QueryResult, ReferenceDB
from .store import Calibration, ImageRecord, Store, StoreUnavailable

__all__ = ["AddReport", "Admission", "Calibration", "Examined", "HammingIndex", "ImageRecord", "IndexConfig", "Match", "QueryResult", "ReferenceDB", "Store", "StoreUnavailable", "examine"]
