"""One torch thread for a block of work on tiny tensors.

Checking a rule or a user's training function runs a small model: starting
and syncing a second intra-op thread costs more than it saves, and on cores
that other work shares, OpenMP's spinning threads made these checks 3-10x
slower. The previous thread count comes back afterwards.
"""

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch  # here, not at import: `gdlab --help` must not load torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
