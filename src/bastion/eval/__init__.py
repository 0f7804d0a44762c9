"""Evaluation: datasets in, metrics and a report (numbers plus pictures) out."""
