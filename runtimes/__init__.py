"""One streaming interface, one implementation per runtime.

Each runtime module imports only its own engine: `runtimes.onnxruntime` never imports
TensorFlow, so a deployment box needs only the artifact, its manifest and one engine.
"""
