"""Batch scoring: read a table in chunks, score it on a published model, write the results."""
