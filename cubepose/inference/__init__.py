"""Prediction from a checkpoint: the PosePredictor (load, decode images, check the camera, batch, mask
non-finite poses), the training camera it checks against, and export to TorchScript / ONNX."""
