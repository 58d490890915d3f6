"""Evaluation: the SPIRE benchmark (build, run, report) and baseline restorers."""
