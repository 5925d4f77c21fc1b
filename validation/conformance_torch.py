"""Worked example: a hand-written PyTorch VAE and Helmholtz machine pass lvmref's
conformance check.

    python validation/conformance_torch.py [DIR]      # needs torch (CPU build is enough)

What another implementation does, step by step:

1. get the golden vectors: ``lvmref conformance write DIR`` (done here if DIR has none);
2. read ``DIR/manifest.json`` and ``DIR/inputs.npz`` -- nothing else; this file does not
   import lvmref: everything below is written from the formulas and layouts in the
   manifest, the way a PyTorch user would (float64 tensors, autograd for every gradient,
   ``torch.optim.Adam`` for the Adam step);
3. compute each output of every ``vae.*`` and ``helmholtz.*`` case and save them under
   the manifest's keys in ``DIR/results_torch.npz``;
4. run ``lvmref conformance check DIR DIR/results_torch.npz --cases 'vae.*' --cases
   'helmholtz.*'``, which prints the table; its exit status is this script's.

Gradient estimators as autograd surrogates (the standard autodiff forms):
IWAE = logmeanexp(log w); DReG = sum stop(omega)^2 log w with q's parameters detached
in log q (encoder) and the IWAE gradient (decoder); STL = mean log w with q's parameters
detached in log q; REINFORCE = log p(x | z) + stop(f - b) log q with z detached; VIMCO =
L + sum_j stop(L - L_{-j}) log q(z_j); RWS = sum stop(omega) (log p + log q).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    print("torch is not installed: pip install torch==2.13.0 (CPU); skipping")
    sys.exit(0)

LOG_2PI = math.log(2 * math.pi)
F = torch.nn.functional
ACT = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda a: a}


def tensors(inputs, case, prefix, grad=False):
    head = f"{case}/{prefix}/"
    return {k[len(head):]: torch.tensor(v, requires_grad=grad)
            for k, v in inputs.items() if k.startswith(head)}


def mlp(p, prefix, n_layers, act, h):
    for i in range(n_layers):
        h = h @ p[f"{prefix}W{i}"] + p[f"{prefix}b{i}"]
        if i < n_layers - 1:
            h = ACT[act](h)
    return h


def log_bern(h, logits):
    """log Bernoulli(h | sigmoid(logits)), exact for |logits| up to ~700."""
    return (h * F.logsigmoid(logits) + (1 - h) * F.logsigmoid(-logits)).sum(-1)


def grads_of(value, p, keys=None):
    keys = list(p) if keys is None else keys
    gs = torch.autograd.grad(value, [p[k] for k in keys], retain_graph=True,
                             allow_unused=True)
    return {k: (torch.zeros_like(p[k]) if g is None else g) for k, g in zip(keys, gs)}


# ---------------------------------------------------------------------------- the VAE


class VAE:
    def __init__(self, o):
        self.K, self.D = o["n_latent"], o["n_features"]
        self.L = len(o["hidden"]) + 1
        self.act, self.lik = o["activation"], o["likelihood"]

    def encode(self, p, x):
        out = mlp(p, "enc.", self.L, self.act, x)
        return out[:, :self.K], out[:, self.K:]

    def log_lik(self, p, x, z):
        n, k, K = z.shape
        out = mlp(p, "dec.", self.L, self.act, z.reshape(n * k, K))
        xr = x.repeat_interleave(k, 0)
        if self.lik == "bernoulli":
            ll = log_bern(xr, out)
        else:
            m, v = out[:, :self.D], out[:, self.D:]
            ll = -0.5 * (LOG_2PI + v + (xr - m) ** 2 * torch.exp(-v)).sum(1)
        return ll.reshape(n, k)

    def parts(self, p, x, eps, detach_q=False):
        """(log p(x|z), log p(z), log q(z|x), mu, lv, z) at z = mu + exp(lv/2) eps."""
        mu, lv = self.encode(p, x)
        z = mu[:, None] + torch.exp(0.5 * lv)[:, None] * eps
        mq, lq = (mu.detach(), lv.detach()) if detach_q else (mu, lv)
        log_q = -0.5 * (LOG_2PI + lq[:, None] + (z - mq[:, None]) ** 2
                        * torch.exp(-lq)[:, None]).sum(2)
        log_pz = -0.5 * (LOG_2PI + z**2).sum(2)
        return self.log_lik(p, x, z), log_pz, log_q, mu, lv, z

    def elbo(self, p, x, eps, kl):
        ll, lpz, lq, mu, lv, _ = self.parts(p, x, eps)
        if kl == "analytic":
            return ll.mean(1) - 0.5 * (torch.exp(lv) + mu**2 - 1 - lv).sum(1)
        return (ll + lpz - lq).mean(1)

    def log_w(self, p, x, eps, detach_q=False):
        ll, lpz, lq, *_ = self.parts(p, x, eps, detach_q)
        return ll + lpz - lq


def vae_case(c, inputs):
    name, o = c["name"], c["options"]
    if name == "vae.adam_step":
        return vae_adam(c, inputs)
    m = VAE(o)
    p = tensors(inputs, name, "params", grad=True)
    x = torch.tensor(inputs[f"{name}/x"])
    eps = torch.tensor(inputs[f"{name}/eps"])
    fn = c["function"]
    out = {}
    if fn.startswith("lvmref.vae.elbo "):
        return {"elbo": m.elbo(p, x, eps, o["kl"])}
    if "elbo_grad_reparam" in fn:
        value = m.elbo(p, x, eps, o["kl"]).mean()
        out["grads"] = grads_of(value, p)
    elif "elbo_grad_reinforce" in fn:
        ll, _, lq, mu, lv, z = m.parts(p, x, eps)
        z = z.detach()
        k = z.shape[1]
        log_q = -0.5 * (LOG_2PI + lv[:, None] + (z - mu[:, None]) ** 2
                        * torch.exp(-lv)[:, None]).sum(2)
        ll = m.log_lik(p, x, z)
        f = ll.detach()
        b = (f.sum(1, keepdim=True) - f) / (k - 1)        # leave-one-out
        kl = 0.5 * (torch.exp(lv) + mu**2 - 1 - lv).sum(1)
        value = (ll.mean(1) - kl).mean()
        out["grads"] = grads_of((ll.mean(1) + ((f - b) * log_q).mean(1) - kl).mean(), p)
    elif "elbo_grad_stl" in fn:
        value = m.log_w(p, x, eps).mean()
        out["grads"] = grads_of(m.log_w(p, x, eps, detach_q=True).mean(), p)
    elif "iwae_grad" in fn:
        lw = m.log_w(p, x, eps)
        value = (torch.logsumexp(lw, 1) - math.log(lw.shape[1])).mean()
        out["grads"] = grads_of(value, p)
        if o["estimator"] == "dreg":
            omega = torch.softmax(lw.detach(), 1)
            sur = (omega**2 * m.log_w(p, x, eps, detach_q=True)).sum(1).mean()
            enc = [k for k in p if k.startswith("enc.")]
            out["grads"].update(grads_of(sur, p, enc))
    else:
        raise KeyError(fn)
    out["value"] = value
    return out


def vae_adam(c, inputs):
    name, o = c["name"], c["options"]
    m = VAE(o)
    p = tensors(inputs, name, "params", grad=True)
    x, eps = torch.tensor(inputs[f"{name}/x"]), torch.tensor(inputs[f"{name}/eps"])
    opt = torch.optim.Adam(list(p.values()), lr=o["lr"], betas=(o["beta1"], o["beta2"]),
                           eps=o["eps"])
    m1, v1 = tensors(inputs, name, "m"), tensors(inputs, name, "v")
    for k, t in p.items():  # Adam's state after t steps, as given
        opt.state[t] = {"step": torch.tensor(float(o["t"])), "exp_avg": m1[k].clone(),
                        "exp_avg_sq": v1[k].clone()}
    loss = -m.elbo(p, x, eps, "analytic").mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"params_after": {k: t.detach() for k, t in p.items()},
            "m_after": {k: opt.state[t]["exp_avg"] for k, t in p.items()},
            "v_after": {k: opt.state[t]["exp_avg_sq"] for k, t in p.items()}}


# ---------------------------------------------------------------------------- the Helmholtz machine


class Helmholtz:
    def __init__(self, o):
        self.sizes = o["layer_sizes"]
        self.Lg, self.Lr = len(o["hidden"]) + 1, len(o["recognition_hidden"]) + 1
        self.act = o["activation"]
        self.off = np.concatenate([[0], np.cumsum(self.sizes)])
        self.K = int(self.off[-2])

    def layers(self, v):
        return [v[:, self.off[i]:self.off[i + 1]] for i in range(len(self.sizes))]

    def log_prior_and_joint(self, p, x, z):
        hs = self.layers(torch.cat([z, x], 1))
        lp = log_bern(hs[0], p["prior"].expand_as(hs[0]))
        out = lp
        for l in range(len(self.sizes) - 1):
            term = log_bern(hs[l + 1], mlp(p, f"gen{l}.", self.Lg, self.act, hs[l]))
            out = out + term
            if l < len(self.sizes) - 2:
                lp = lp + term
        return lp, out

    def log_q(self, p, x, z):
        hs = self.layers(torch.cat([z, x], 1))
        out = torch.zeros(x.shape[0])
        for l in range(len(self.sizes) - 1):
            out = out + log_bern(hs[l], mlp(p, f"rec{l}.", self.Lr, self.act, hs[l + 1]))
        return out

    def sample_q(self, p, x, u):
        z = torch.empty(x.shape[0], self.K)
        h = x
        for l in range(len(self.sizes) - 2, -1, -1):
            c = mlp(p, f"rec{l}.", self.Lr, self.act, h)
            h = (u[:, self.off[l]:self.off[l + 1]] < torch.sigmoid(c)).double()
            z[:, self.off[l]:self.off[l + 1]] = h
        return z

    def sample_prior(self, p, u):
        h = (u[:, :self.off[1]] < torch.sigmoid(p["prior"])).double()
        out = [h]
        for l in range(len(self.sizes) - 1):
            a = mlp(p, f"gen{l}.", self.Lg, self.act, h)
            h = (u[:, self.off[l + 1]:self.off[l + 2]] < torch.sigmoid(a)).double()
            out.append(h)
        v = torch.cat(out, 1)
        return v[:, :self.K], v[:, self.K:]

    def log_w(self, p, x, z):
        """x (n, D), z (n, k, K) -> log p, log q, each (n, k)."""
        n, k, K = z.shape
        xr, zr = x.repeat_interleave(k, 0), z.reshape(n * k, K)
        return (self.log_prior_and_joint(p, xr, zr)[1].reshape(n, k),
                self.log_q(p, xr, zr).reshape(n, k))

    def vimco_surrogate(self, p, x, z):
        lp, lq = self.log_w(p, x, z)
        lw = lp - lq
        k = lw.shape[1]
        L = torch.logsumexp(lw, 1) - math.log(k)
        d = lw.detach()
        loo = []
        for j in range(k):
            others = torch.cat([d[:, :j], d[:, j + 1:]], 1)
            loo.append(torch.logsumexp(torch.cat([others, others.mean(1, keepdim=True)], 1), 1)
                       - math.log(k))
        signal = L.detach()[:, None] - torch.stack(loo, 1)
        return (L + (signal * lq).sum(1)).sum(), L

    def rws_surrogate(self, p, x, z):
        lp, lq = self.log_w(p, x, z)
        omega = torch.softmax((lp - lq).detach(), 1)
        L = torch.logsumexp((lp - lq).detach(), 1) - math.log(lp.shape[1])
        return (omega * (lp + lq)).sum(), L


def helmholtz_case(c, inputs):
    name, o, fn = c["name"], c["options"], c["function"]
    m = Helmholtz(o)
    p = tensors(inputs, name, "params", grad=True)
    x = torch.tensor(inputs[f"{name}/x"])
    gen = [k for k in p if not k.startswith("rec")]
    rec = [k for k in p if k.startswith("rec")]
    if "sgd_update" in fn:
        return helmholtz_update(c, inputs, m, p, x)
    z = torch.tensor(inputs[f"{name}/z"])
    if "log_joint" in fn:
        lprior, lj = m.log_prior_and_joint(p, x, z)
        lq = m.log_q(p, x, z)
        return {"log_joint": lj, "log_q": lq, "log_prior": lprior,
                "wake_grad": grads_of(lj.sum(), p, gen), "sleep_grad": grads_of(lq.sum(), p, rec)}
    if "rws_grads" in fn or "vimco_grads" in fn:
        sur, L = (m.rws_surrogate if "rws" in fn else m.vimco_surrogate)(p, x, z)
        return {"grads": grads_of(sur, p), "log_px": L}
    if "reinforce_grads" in fn:
        b = torch.tensor(inputs[f"{name}/baseline"])
        lj = m.log_prior_and_joint(p, x, z)[1]
        lq = m.log_q(p, x, z)
        signal = (lj - lq).detach()
        sur = lj.sum() + ((signal - b) / o["scale"] * lq).sum()
        return {"grads": grads_of(sur, p), "signal": signal}
    raise KeyError(fn)


def helmholtz_update(c, inputs, m, p, x):
    name, o = c["name"], c["options"]
    uq, us = torch.tensor(inputs[f"{name}/uq"]), torch.tensor(inputs[f"{name}/us"])
    B, k, K = uq.shape
    lr, lr_q = o["lr"], o["lr_q"]

    def step(params, grads):
        return {key: (params[key] + (lr_q if key.startswith("rec") else lr) / B
                      * grads[key]).detach().requires_grad_() if key in grads else params[key]
                for key in params}

    if o["method"] == "wake-sleep":
        z = m.sample_q(p, x, uq[:, 0])
        lj, lq = m.log_prior_and_joint(p, x, z)[1], m.log_q(p, x, z)
        obj = (lj - lq).mean()
        p = step(p, grads_of(lj.sum(), p, [k for k in p if not k.startswith("rec")]))
        zd, xd = m.sample_prior(p, us)
        p = step(p, grads_of(m.log_q(p, xd, zd).sum(), p, [k for k in p if k.startswith("rec")]))
    else:  # vimco
        z = m.sample_q(p, x.repeat_interleave(k, 0), uq.reshape(B * k, K)).reshape(B, k, K)
        sur, L = m.vimco_surrogate(p, x, z)
        obj = L.mean()
        p = step(p, grads_of(sur, p))
    return {"params_after": {key: t.detach() for key, t in p.items()}, "objective": obj}


# ---------------------------------------------------------------------------- driver


def flatten(case, out, prefix=""):
    res = {}
    for k, v in out.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            res.update(flatten(case, v, key + "/"))
        else:
            res[f"{case}/{key}"] = np.asarray(v.detach().numpy() if torch.is_tensor(v) else v,
                                              dtype=np.float64)
    return res


def main(argv):
    """Compute the outputs in float64 (the default dtype only while this runs) and check."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _main(argv)
    finally:
        torch.set_default_dtype(old)


def _main(argv):
    d = Path(argv[0] if argv else "conformance-vectors")
    lvmref = [sys.executable, "-m", "lvmref", "conformance"]
    if not (d / "manifest.json").is_file():
        subprocess.run([*lvmref, "write", str(d)], check=True)
    manifest = json.loads((d / "manifest.json").read_text())
    with np.load(d / manifest["files"]["inputs"]) as f:
        inputs = {k: f[k] for k in f.files}
    results, n = {}, 0
    for c in manifest["cases"]:
        if c["model"] == "vae":
            results.update(flatten(c["name"], vae_case(c, inputs)))
        elif c["model"] == "helmholtz":
            results.update(flatten(c["name"], helmholtz_case(c, inputs)))
        else:
            continue
        n += 1
    out = d / "results_torch.npz"
    np.savez(out, **results)
    print(f"torch {torch.__version__}: computed {len(results)} outputs of {n} cases -> {out}")
    return subprocess.run([*lvmref, "check", str(d), str(out), "--cases", "vae.*",
                           "--cases", "helmholtz.*"]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
