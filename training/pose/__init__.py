"""Pose CNN: data loading, networks, training, evaluation and ONNX export."""
