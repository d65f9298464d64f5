"""mnist_core: data, models, training, runs, jobs, evaluation and inference for the MNIST dashboard.

Works on its own from the command line (`python -m mnist_core`) and from notebooks; it never
imports streamlit. `mnist_core.predict(image, model=None)` gives the 10 class probabilities of
a drawn or photographed digit (see `mnist_core.inference.predict`).
"""


def __getattr__(name: str):
    # Lazy, so that `import mnist_core.config` does not have to load torch.
    if name == "predict":
        from mnist_core.inference import predict

        return predict
    raise AttributeError(f"module 'mnist_core' has no attribute {name!r}")
