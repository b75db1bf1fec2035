"""Exporters, the artifact cache and the rewrites they apply.

One exporter per format family (`converters.exporter`) turns the traced step function
(`core.build`), or the artifact of another format, into one artifact with its state manifest
beside it; `converters.export.export_model` is the one path every format takes. Runtimes read
those files and never import this package. Importing it is cheap: TensorFlow and the other
converters are imported only when a model is converted (inside the exporters' builds).
"""
