"""The vocabulary of a sweep: the values each axis accepts, shared by CLI, suites and plan."""

DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
PRECISIONS = ("cast", "amp")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODES = ("infer", "train")
AUTO = "auto"
