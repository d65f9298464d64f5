"""Ray: the cluster connection (`cluster`, `address`) and the sweep driver (`sweep_driver`).

Only a sweep, or a job with `MNIST_JOB_BACKEND=ray`, imports `cluster` and `sweep_driver`: they
import Ray, which the rest of mnist_core never does. `address` imports no Ray.
"""
