"""mnist_core works without Streamlit (and without Ray, until a sweep or a Ray job asks for it)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import mnist_core

# The modules that import Ray themselves: only a sweep's driver or a Ray job loads them.
NEEDS_RAY = {"mnist_core.distributed.cluster", "mnist_core.distributed.sweep_driver"}


def every_module() -> list[str]:
    """Every module of the package, found on disk, so a new module is checked without being listed here."""
    root = Path(mnist_core.__file__).parent
    return sorted(info.name for info in pkgutil.walk_packages([str(root)], prefix="mnist_core."))


def test_the_package_has_its_layers():
    modules = every_module()
    assert "mnist_core.cli" in modules and "mnist_core.cli.train" in modules and "mnist_core.job" in modules
    assert "mnist_core.distributed" in modules


def test_mnist_core_never_imports_streamlit():
    modules = " ".join(name for name in every_module() if name not in NEEDS_RAY)
    code = (
        "import importlib, sys\n"
        f"for name in '{modules}'.split(): importlib.import_module(name)\n"
        "print('streamlit' in sys.modules, 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"
