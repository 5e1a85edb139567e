"""Evaluation metrics as published protocols define them: pure tensor functions, no I/O.

See PROTOCOLS.md (the project's evaluation protocols) for which source project each metric follows.
"""
