"""Print the build environment's requirements, one per line, from pyproject.toml.

    python packaging/requirements.py [--cpu] [--no-onnx]

The project's dependencies plus the `packaging` extra (PyInstaller) and, unless
--no-onnx, the `onnx` extra. With --cpu, `tensorflow` becomes `tensorflow-cpu`:
the same TensorFlow without the CUDA kernels (Linux x86_64), about 450 MB smaller
unpacked, for an installer that trains on the CPU.
"""

import re
import sys
import tomllib
from pathlib import Path

meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
reqs = list(meta["dependencies"])
if "--cpu" in sys.argv:
    reqs = [re.sub(r"^tensorflow(?=[<>=!~ ;\[]|$)", "tensorflow-cpu", r) for r in reqs]
reqs += meta["optional-dependencies"]["packaging"]
if "--no-onnx" not in sys.argv:
    reqs += meta["optional-dependencies"]["onnx"]
print("\n".join(reqs))
