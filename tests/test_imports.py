"""mnist_core works without Streamlit: importing every module must not import it."""

import subprocess
import sys


def test_mnist_core_never_imports_streamlit():
    modules = ("config data device events models checkpoint train inference evaluate runs jobs worker saliency "
               "preprocess __main__ sweep sweep_cli policy cluster sweep_driver audit audit_cli marks inside embedding "
               "embed_cli ctrl_c")
    code = (
        "import importlib, sys\n"
        f"for name in '{modules}'.split(): importlib.import_module('mnist_core.' + name)\n"
        "print('streamlit' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
