"""Everything npmnv2 does with a `.tflite` file, one module per part:

    ops            TFLITE_OPS: the one table of TFLite ops (options, versions, inputs, kinds, integer form)
    structure      the flatbuffer's structure checks and TFLite's fused-activation codes
    validate       the validator every reader runs first (names the op, tensor and field of a problem)
    graph          TFLiteGraph: the validated file as op records, tensors, constants and labels
    layers         which transformers layer each op is, found from the graph's structure
    float_import   the file's weights as transformers-named float tensors, and its config
    integer_model  QuantizedMobileNetV2: the graph run op by op in integer arithmetic
    kernels        the interpreter's kernel sets it reproduces (reference, optimized) and their rounding rules

Nothing here imports TensorFlow or the interpreter (`npmnv2.verify.interpreter` runs that, in a
child process). `import npmnv2.tflite` imports none of the parts: each is imported where it is used.
"""
