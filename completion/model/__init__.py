"""The model and its kernels: loading weights, the forward pass, weight formats, RoPE rotation."""
