"""Lion, written the way a researcher writes their own optimizer: a torch.optim.Optimizer subclass.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2:
    c = beta1 * m + (1 - beta1) * g
    theta = theta * (1 - lr * wd) - lr * sign(c)
    m = beta2 * m + (1 - beta2) * g

Study it like any built-in rule, e.g. in experiments/rules-fashion-mnist.toml:
    [[search.configs]]
    name = "../examples/lion_optimizer.py:Lion"
    lr = 1e-4
"""

import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Invalid betas: {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.mul(beta1).add(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss
