"""mnist_core: data, models, training, runs, jobs, evaluation and inference for the MNIST dashboard.

Works on its own from the command line (`python -m mnist_core`) and from notebooks; it never
imports streamlit.
"""
