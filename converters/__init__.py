"""Exporters, the artifact cache and the rewrites they apply.

Each exporter turns the traced step function (`core.build`) into one artifact with its state
manifest beside it; runtimes read those files and never import this package. Importing it is
cheap: TensorFlow is imported only by the modules that convert models (`converters.export_*`).
"""
