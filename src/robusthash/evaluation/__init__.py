"""Evaluation: metrics, benchmark runner and reports. Drives the library; never imported by it."""
