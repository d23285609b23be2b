"""The JAX + optax peer of ``bench_peers.py``: how a researcher who wants speed writes the epoch in JAX.

Runs in its own environment (``make bench-peers`` makes ``.venv-peers`` with
jax and optax from PyPI; gdlab itself does not depend on JAX), as a worker
process of ``bench_peers.py``: it loads the data the parent wrote, compiles
every epoch function ahead of time (compile time is excluded from every
figure), prints ``{"ready": ...}`` and then answers one JSON line per request
read from stdin, so that the parent can interleave JAX's epochs with its own:

    {"run": "single", "round": r}       ->  {"seconds": s, "mean_loss": l}
    {"run": "vmap", "k": K, "round": r} ->  {"seconds": s, "mean_loss": l}

The epoch, written as an expert would: the images resident as one device
array, the whole epoch ``jit``-compiled as one ``lax.scan`` over index
batches of a random permutation, the 784-100-100-10 MLP (ReLU) with
``jax.nn.log_softmax`` cross-entropy, ``jax.value_and_grad``, ``optax.sgd``
with momentum 0.9, and every iteration's loss and correct count kept (as
gdlab's History keeps them) and brought to the host when the epoch ends.
K configurations (K learning rates) are the same epoch under ``jax.vmap``
over the parameters, the optimizer state and the learning rate, one batch
order for all (as ``fit_stacked`` trains them). Parameters and optimizer
state are donated, so no step copies them.

    .venv-peers/bin/python benchmarks/peers_jax.py DATA.npz '{"batch_size": 128, ...}'
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


def init_mlp(key, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    """torch.nn.Linear's default initialization: W and b uniform in +-1/sqrt(fan_in); W stored (in, out)."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, weight_key, bias_key = jax.random.split(key, 3)
        bound = 1.0 / np.sqrt(fan_in)
        params.append((
            jax.random.uniform(weight_key, (fan_in, fan_out), jnp.float32, -bound, bound),
            jax.random.uniform(bias_key, (fan_out,), jnp.float32, -bound, bound),
        ))
    return params


def loss_and_correct(params, x, y):
    h = x
    for weight, bias in params[:-1]:
        h = jax.nn.relu(h @ weight + bias)
    weight, bias = params[-1]
    scores = h @ weight + bias
    log_probabilities = jax.nn.log_softmax(scores)
    loss = -jnp.mean(jnp.take_along_axis(log_probabilities, y[:, None], axis=1))
    return loss, jnp.sum(jnp.argmax(scores, axis=1) == y)


def epoch(params, opt_state, learning_rate, x, y, order, momentum: float):
    """One epoch over the batches ``order`` (steps, batch_size) of indices; every step's loss and correct count."""
    optimizer = optax.sgd(learning_rate, momentum=momentum)

    def step(carry, indices):
        params, opt_state = carry
        (loss, correct), grads = jax.value_and_grad(loss_and_correct, has_aux=True)(params, x[indices], y[indices])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, correct)

    (params, opt_state), (losses, correct) = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state, losses, correct


class Peer:
    def __init__(self, data_path: str, settings: dict):
        data = np.load(data_path)
        self.x, self.y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
        self.sizes = settings["sizes"]
        self.steps = len(data["y"]) // settings["batch_size"]
        self.batch_size = settings["batch_size"]
        # K -> the K members' learning rates (JSON keys are strings)
        self.learning_rates = {int(k): rates for k, rates in settings["learning_rates"].items()}
        self.single_lr = settings["lr"]
        self.momentum = settings["momentum"]
        optimizer = optax.sgd(self.single_lr, momentum=self.momentum)
        self.init_state = optimizer.init
        started = time.perf_counter()
        single = jax.jit(lambda p, s, lr, x, y, o: epoch(p, s, lr, x, y, o, self.momentum), donate_argnums=(0, 1))
        params, state = self.start(0, None)
        self.single = single.lower(params, state, jnp.float32(self.single_lr), self.x, self.y, self.order(0)).compile()
        vmapped = jax.jit(
            jax.vmap(lambda p, s, lr, x, y, o: epoch(p, s, lr, x, y, o, self.momentum),
                     in_axes=(0, 0, 0, None, None, None)),
            donate_argnums=(0, 1),
        )
        self.vmapped = {}
        for k in self.learning_rates:
            params, state = self.start(0, k)
            rates = jnp.asarray(self.learning_rates[k], jnp.float32)
            self.vmapped[k] = vmapped.lower(params, state, rates, self.x, self.y, self.order(0)).compile()
        self.compile_seconds = time.perf_counter() - started

    def order(self, round_index: int) -> jax.Array:
        key = jax.random.PRNGKey(1000 + round_index)
        permutation = jax.random.permutation(key, len(self.y))
        return permutation[: self.steps * self.batch_size].reshape(self.steps, self.batch_size)

    def start(self, round_index: int, k: int | None):
        """Fresh parameters and optimizer state: one member, or k stacked along a first axis."""
        key = jax.random.PRNGKey(round_index)
        if k is None:
            params = init_mlp(key, self.sizes)
            return params, self.init_state(params)
        params = jax.vmap(lambda member_key: init_mlp(member_key, self.sizes))(jax.random.split(key, k))
        return params, jax.vmap(self.init_state)(params)

    def run(self, request: dict) -> dict:
        round_index = request["round"]
        k = request.get("k")
        params, state = self.start(round_index, k)
        order = self.order(round_index)
        jax.block_until_ready((params, state, order))
        if k is None:
            function, rates = self.single, jnp.float32(self.single_lr)
        else:
            function, rates = self.vmapped[k], jnp.asarray(self.learning_rates[k], jnp.float32)
        started = time.perf_counter()
        params, state, losses, correct = function(params, state, rates, self.x, self.y, order)
        losses, correct = np.asarray(losses), np.asarray(correct)  # to the host, as gdlab's History holds them
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "mean_loss": float(losses.mean()), "correct": int(correct.sum())}


def main() -> None:
    data_path, settings = sys.argv[1], json.loads(sys.argv[2])
    peer = Peer(data_path, settings)
    print(json.dumps({"ready": True, "compile_seconds": peer.compile_seconds, "jax": jax.__version__,
                      "optax": optax.__version__, "device": str(jax.devices()[0])}), flush=True)
    for line in sys.stdin:
        print(json.dumps(peer.run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
