"""Export (torch -> ONNX) and TensorRT engine building; pure file-in/file-out functions."""
