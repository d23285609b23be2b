"""Test-session settings shared by every test file.

The tests train tiny models. A second intra-op thread buys them nothing and,
when anything else shares the two cores (`make test` runs two pytest workers),
OpenMP's waiting threads spin against each other and small-matrix training
runs tens of times slower. So every test process, and every subprocess a test
starts, computes on one thread. Results do not depend on it: the exactness
tests compare like with like in one process, and the Ray tests set the
driver's count themselves.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread variables, which torch reads once)

torch.set_num_threads(1)
