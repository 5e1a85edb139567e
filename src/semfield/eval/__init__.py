"""Evaluation metrics as published protocols define them: pure tensor functions, no I/O.

See ``/work/shared/PROTOCOLS.md`` for which source project each metric follows.
"""
