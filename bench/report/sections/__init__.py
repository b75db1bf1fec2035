"""The sections of a run's report, one module each (bench.report.build puts them in order)."""
