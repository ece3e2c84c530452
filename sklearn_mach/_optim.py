"""Optimizers suited to networks whose input table gets sparse gradients."""

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam that also accepts sparse gradients, updating only the rows they touch.

    Dense gradients get the standard Adam update (Kingma & Ba, 2015).  A sparse
    gradient (from :func:`torch.nn.functional.embedding_bag` with
    ``sparse=True``) updates the moments and the weights of the rows it
    holds only, as :class:`torch.optim.SparseAdam` does.  This keeps a step
    over a 10^5-row input table proportional to the features present in the
    batch instead of to the table size.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups to optimise.
    lr : float, default=1e-3
        Learning rate.
    betas : tuple of float, default=(0.9, 0.999)
        Decay rates of the first and second moment estimates.
    eps : float, default=1e-8
        Term added to the denominator for numerical stability.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if lr <= 0:
            raise ValueError(f"LazyAdam needs lr > 0, got {lr}.")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

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
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = state["step"]
                step_size = group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows = grad.indices()[0]
                    values = grad.values()
                    m = exp_avg.index_select(0, rows).mul_(beta1).add_(
                        values, alpha=1 - beta1
                    )
                    v = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(
                        values, values, value=1 - beta2
                    )
                    exp_avg.index_copy_(0, rows, m)
                    exp_avg_sq.index_copy_(0, rows, v)
                    p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])), alpha=-step_size)
                else:
                    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    p.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size)
        return loss
