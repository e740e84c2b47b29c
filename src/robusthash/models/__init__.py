"""Learned hashers' models. Training code needs torch (the ``train`` extra); nothing
here is imported by the core package, which hashes with ONNX models on onnxruntime."""
