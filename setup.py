"""Packaging for edge-runtime.

Edge box:        pip install .            (ONNX Runtime, Numba, zstandard, OpenCV, pyzmq, msgspec; no torch)
Offline machine: pip install ".[train]"   (adds torch==2.13.0 CPU, onnx, onnxscript)
Cluster mode:    pip install ".[cluster]"  (Ray Serve: the receiver's back half on a Ray cluster)
Development:     pip install ".[train,dev,cluster]"
"""

import atexit
import shutil
import tempfile

from setuptools import find_packages, setup

# `pip install .` leaves nothing in the checkout: setuptools' build/ and *.egg-info folders go to a
# temporary folder that is removed when the build ends.
_SCRATCH = tempfile.mkdtemp(prefix="edge-runtime-build-")
atexit.register(shutil.rmtree, _SCRATCH, True)

RUNTIME = [
    "numpy>=1.26,<2.6",  # numba supports numpy < 2.6
    "numba>=0.61",
    "onnxruntime>=1.20",
    "zstandard>=0.23",
    "opencv-python-headless>=4.10",
    "pyzmq>=26",
    "prometheus_client>=0.20",  # metrics: counting, exposition, HTTP, multiprocess mode
    "msgspec>=0.23",  # the edge config: typed sections, TOML decoding, checked conversion
    # COCO mAP of detection bundles (the demo and benchmarks): the reference implementation, a
    # small C extension needing only numpy (edge_runtime/detection.py)
    "pycocotools>=2.0.8",
]
TRAIN = [
    # Pinned: an unpinned torch pulls several GB of CUDA packages; 2.13.0 has a CPU build here.
    "torch==2.13.0",
    "onnx>=1.17",
    "onnxscript>=0.2",  # the dynamo ONNX exporter needs it
    # No onnx2torch: it needs torchvision, whose wheel for this torch is a CUDA build that fails to
    # import on the CPU torch; outside models are converted by models/onnx_torch.py instead.
    "tqdm>=4.66",
    "flask>=3.0",
]
DEV = [
    "pytest>=8",
    "hypothesis>=6.100",
    "ruff>=0.6",
    "matplotlib>=3.8",
    "scipy>=1.11",  # paired bootstrap intervals of the benchmarks (benchmarks/rate_select.py)
    "pillow>=11.3",  # AVIF baseline (its wheels bundle libavif; benchmarks/rate_baselines.py)
    "tqdm>=4.66",
    # Drives Debian's headless Chromium (executablePath) in the editor test; never downloads a browser.
    "playwright>=1.45",
]

CLUSTER = [
    # The receiver's cluster mode (edge-runtime receive --ray): Ray Serve, imported lazily.
    # 2.60 is the version tested here (serve.batch's batch_size_fn, proxy_location="Disabled").
    "ray[serve]>=2.60",
]

setup(
    name="edge-runtime",
    version="0.1.0",
    description="Importance-guided split inference at the edge: ONNX front half, Numba kernels, "
    "entropy-coded features over ZeroMQ",
    python_requires=">=3.11",
    # kernels/ and models/ install as edge_runtime.kernels / edge_runtime.models: names this generic
    # as top-level packages would collide with other projects' modules in site-packages.
    packages=find_packages(include=["edge_runtime", "edge_runtime.*"])
    + [f"edge_runtime.{p}" for p in find_packages(include=["kernels", "kernels.*", "models", "models.*"])],
    package_dir={"edge_runtime.kernels": "kernels", "edge_runtime.models": "models"},
    package_data={
        "edge_runtime": [
            "bundles/*/*.onnx",
            "bundles/*/*.json",
            "codec/*.npy",
            "assets/*.npz",
            "assets/*.md",
            "assets/COPYING.*",
            "assets/backgrounds/*",
        ],
        "edge_runtime.models": ["editor/static/*"],
    },
    install_requires=RUNTIME,
    extras_require={"train": TRAIN, "dev": DEV, "cluster": CLUSTER},
    entry_points={"console_scripts": ["edge-runtime=edge_runtime.cli:main"]},
    options={"build": {"build_base": f"{_SCRATCH}/build"}, "egg_info": {"egg_base": _SCRATCH}},
)
