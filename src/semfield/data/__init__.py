"""Data: benchmark scene generation and the curated object vocabulary."""
