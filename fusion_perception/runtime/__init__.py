"""Runtime layer: backends, post-processing and the Pipeline. NumPy + OpenCV + one backend; no torch."""
