"""File formats, one module each: `safetensors_format`, `torch_bin` (the restricted `.bin` reader),
`atomic` (all-or-nothing writes), `hub` (huggingface_hub), `errors` (shared checks). `npmnv2.weights`
reads checkpoint folders and sources with them; `npmnv2.tflite` reads `.tflite` files.
Nothing here imports torch, and no file is trusted (docs/security.md)."""

# the file names of a transformers checkpoint folder
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
