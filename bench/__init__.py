"""The movibench harness: CLI, validation, data, evaluation protocols, matrix and reports."""
