"""Ray: the cluster connection (`cluster`, `address`), the sweep driver (`sweep_driver`) and the
app's sweep process (`sweep_process`).

Only a sweep, or a job with `MNIST_JOB_BACKEND=ray`, imports `cluster` and `sweep_driver`: they
import Ray, which the rest of mnist_core never does. `address` imports no Ray, and neither does
`sweep_process` until it holds a training slot.
"""
