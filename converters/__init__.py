"""Model zoo, Model Garden builds, exporters and the state manifest.

Importing this package is cheap: TensorFlow is imported only by the modules that build or
convert models (`converters.build`, `converters.export_*`).
"""
