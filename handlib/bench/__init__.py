"""Benchmarks: ``python -m handlib.bench render|cache|train|adversarial`` print one JSON line each."""
