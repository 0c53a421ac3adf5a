"""Model backends: PyTorch (nn.Module, TorchScript, factory + state_dict) and ONNX Runtime."""
