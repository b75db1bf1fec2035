"""What every package shares: errors, the format registry, the state manifest, the model zoo,
the Model Garden build of a model, and the CUDA bindings TensorRT's exporter and runtime both use.

`converters`, `runtimes` and `bench` import this package; it imports none of them. Importing it
is cheap: only `core.build` imports TensorFlow and only `core.tensorrt_cuda` CUDA.
"""
