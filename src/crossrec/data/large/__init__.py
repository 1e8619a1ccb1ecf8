"""Out-of-core preparation: the ``tabular`` format through DuckDB, for inputs larger than
memory (``crossrec prepare tabular PATH OUT --engine duckdb --memory-limit 2GB``).

DuckDB is imported only when ``prepare_large`` runs.
"""

from crossrec.data.large.build import AUTO_BYTES, LARGE_OPTIONS, prepare_large, use_large

__all__ = ["AUTO_BYTES", "LARGE_OPTIONS", "prepare_large", "use_large"]
