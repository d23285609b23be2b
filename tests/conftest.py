"""Test-session settings shared by every test file.

`make test` runs two pytest workers on two cores. Each torch process would
otherwise start one compute thread per core, and four busy threads on two
cores make OpenMP's waiting threads spin against each other: small-matrix
training then runs tens of times slower. One thread per worker, set before
torch starts its pool (and inherited by the subprocesses the tests start),
keeps the suite fast; results do not depend on it (the exactness tests
compare like with like in the same process).
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

    import torch

    torch.set_num_threads(1)
