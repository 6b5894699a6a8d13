"""The fast forms of the network: the plain forward (`forward`) and backward (`gradients`) on
folded layers, and the kernels they run (`kernels`), one fast form per layer kind of
`npmnv2.layer_kinds.LAYER_KINDS`. Each is tested equal to the textbook step path
(`tests/test_fast_path.py`, `tests/test_gradients.py`); `docs/fast_forward.md` explains them.
"""
