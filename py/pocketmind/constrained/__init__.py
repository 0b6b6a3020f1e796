"""Constrained decoding: JSON output that always parses and validates against a JSON-schema subset.

schema.py (the subset, compiled) -> automaton.py (what bytes may come next) -> vocab.py (what each token may do,
as cached numpy cost arrays) -> generate.py (the sampling loop).
"""
from .generate import JsonStats, generate_json, json_steps
from .schema import NUMBER_CAP, STRING_CAP, SchemaError, compile_schema

__all__ = ["JsonStats", "NUMBER_CAP", "STRING_CAP", "SchemaError", "compile_schema", "generate_json",
           "json_steps"]
