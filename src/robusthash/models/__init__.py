"""Learned hashers' models. Training and export need torch (the ``train`` extra); the
core package imports only ``preprocess`` (numpy and Pillow), the input rule it shares
with the onnxruntime hashers."""
