"""Batch labelling of large corpora: manifest in, Parquet out, through Ray Data."""
