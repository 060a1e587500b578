"""The local engine: GGUF and safetensors models run by our own PyTorch model and C++/Triton kernels."""

import os
import sys

if "torch" not in sys.modules and not {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(os.environ):
    # How long an OpenMP thread spins at a barrier before it sleeps; libgomp reads it once, when torch loads it.
    # Its default (300,000 spins) is for a machine to ourselves: beside another busy process on 2 cores, a
    # thread spun away its time slice while the one it waited for could not run, at each of a decoding
    # step's hundreds of barriers, and SmolLM2 decoded at 0.7 to 35 tokens/s instead of 140-160. With 1,000
    # (libgomp's own choice when a process has more threads than CPUs) it decoded at 34-49 there and
    # within noise of the default alone (docs/engine.md).
    os.environ["GOMP_SPINCOUNT"] = "1000"
