"""Export a trained checkpoint to a verified edge-infer model bundle (ONNX)."""
