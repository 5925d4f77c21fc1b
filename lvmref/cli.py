"""Command-line interface: ``lvmref {demo,gmm,vae,helmholtz,conformance}`` (also
``python -m lvmref``).

Argument parsing and dispatch only; the work is done by :mod:`lvmref.demo` and the model
modules. Every failure -- a missing or malformed file, a bad option value, data that do
not fit the model, training that diverges numerically -- is one line ``lvmref: error: ...``
on stderr naming the file or option, and exit status 2; never a traceback. Numerical work
runs under ``np.errstate(over/divide/invalid="raise")``, so a diverging computation stops
with a clear message instead of printing warnings and carrying NaN on. Training shows one
progress line on stderr (count, rate, time left) when stderr is a terminal, nothing
otherwise; the results and the training history go to stdout; ``--quiet`` prints nothing.

Examples::

    lvmref demo --out demo-report            # ~1 minute; --quick for a smoke test
    lvmref gmm points.csv -k 3 --save gmm.npz
    lvmref gmm points.csv --load gmm.npz     # evaluate a saved model on data
    lvmref vae train.npy --test test.npy --latent 10 --epochs 50 --save vae.npz
    lvmref helmholtz bars.npy --layers 1,8 --updates 200000 --save hm.npz
    lvmref helmholtz bars.npy --method vimco --k 5 --batch-size 10 --updates 20000
    lvmref conformance write vectors/        # golden test vectors
    lvmref conformance check vectors/ mine.npz --cases 'vae.*'   # exit 0 only if all pass
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

EXIT_USAGE = 2
class UserError(Exception):
    """An error caused by the user's input: reported as one line, exit status 2."""


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def _say(args, msg=""):
    if not getattr(args, "quiet", False):
        print(msg, flush=True)


def _progress(args, label, total, unit):
    """A :class:`lvmref.progress.Progress` line on stderr while a model trains: it updates
    in place (count, rate, time left) when stderr is a terminal; otherwise, and with
    ``--quiet``, nothing is written (the history is printed on stdout after training)."""
    from .progress import Progress

    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return Progress(label, total, unit, stream=sys.stderr,
                    quiet=bool(getattr(args, "quiet", False)) or not tty)


def _fmt_array(a):
    import numpy as np

    return np.array2string(np.asarray(a), precision=6, suppress_small=True, max_line_width=100)


def _write_json(path, obj):
    from .files import jsonable

    with open(path, "w") as fh:
        json.dump(jsonable(obj), fh, indent=1, allow_nan=False)


def _check_features(X, n_features, what, source="DATA"):
    """``source`` (DATA or an option such as --test) must have ``n_features`` columns."""
    if X.shape[1] != n_features:
        raise UserError(f"{source} has {X.shape[1]} columns but the {what} expects "
                        f"{n_features}")


def _require_file(path, what="model", option="--load"):
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {p} is a directory, not a {what} file")
    if not p.is_file():
        raise FileNotFoundError(f"{option}: {what} file not found: {p}")
    return path


def _check_destinations(args):
    """Fail before training, not after it, if --save or --json cannot be written."""
    from pathlib import Path

    for option in ("save", "json"):
        path = getattr(args, option, None)
        if path is None:
            continue
        p = Path(path)
        if p.is_dir():
            raise UserError(f"--{option} {p} is a directory; give a file name")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise UserError(f"--{option} {p}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise UserError(f"--{option} {p}: directory {parent} is not writable")


def _int_list(text, name):
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip() != "")
    except ValueError:
        raise UserError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise UserError(f"{name} must be comma-separated positive integers, got {text!r}")
    return vals


def _int_list_or_empty(text, name):
    if text.strip() in ("", "none", "0"):
        return ()
    return _int_list(text, name)


# ----------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------

def cmd_demo(args):
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    return 0


# ----------------------------------------------------------------------------------------
# gmm
# ----------------------------------------------------------------------------------------

def cmd_gmm(args):
    from .files import load_matrix
    from .gmm import GaussianMixture
    from .mixture import ConvergenceWarning

    _check_destinations(args)
    X = load_matrix(args.data, mmap=True)  # a .npy is memory-mapped and fitted in chunks
    if args.load:
        gm = GaussianMixture.load(_require_file(args.load))
        if args.chunk_size is not None:
            gm.set_params(chunk_size=args.chunk_size)
        _check_features(X, gm.n_features_in_, f"GaussianMixture loaded from {args.load}")
        _say(args, f"GaussianMixture from {args.load}: K = {gm.n_components}, "
                   f"covariance_type = {gm.covariance_type}")
    else:
        gm = GaussianMixture(args.k, covariance_type=args.covariance_type, tol=args.tol,
                             reg_covar=args.reg_covar, max_iter=args.max_iter,
                             n_init=args.n_init, random_state=args.seed,
                             chunk_size=args.chunk_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(X)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                print(f"lvmref: warning: {w.message}", file=sys.stderr)
        _say(args, f"fitted K = {gm.n_components} ({gm.covariance_type}) to {X.shape[0]} x "
                   f"{X.shape[1]} data from {args.data}: {gm.n_iter_} EM iterations, "
                   f"converged = {gm.converged_}")
        _say(args, "log-likelihood per point by iteration (of the parameters entering it):")
        for i, lb in enumerate(gm.lower_bounds_, 1):
            _say(args, f"  {i:4d}  {lb:.10f}")
    ll = gm.score(X)
    bic, aic = gm.bic(X), gm.aic(X)
    _say(args, f"weights:\n{_fmt_array(gm.weights_)}")
    _say(args, f"means:\n{_fmt_array(gm.means_)}")
    _say(args, f"covariances:\n{_fmt_array(gm.covariances_)}")
    _say(args, f"log-likelihood per point: {ll:.10f}   total: {ll * X.shape[0]:.6f}")
    _say(args, f"BIC: {bic:.6f}   AIC: {aic:.6f}")
    if args.save:
        _say(args, f"model saved to {gm.save(args.save)}")
    if args.json:
        _write_json(args.json, {
            "n_components": gm.n_components, "covariance_type": gm.covariance_type,
            "weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_,
            "log_likelihood_per_point": ll, "bic": bic, "aic": aic,
            "lower_bounds": gm.lower_bounds_, "n_iter": gm.n_iter_,
            "converged": gm.converged_})
    return 0


# ----------------------------------------------------------------------------------------
# vae
# ----------------------------------------------------------------------------------------

def _vae_eval(args, vae, params, X, label):
    import numpy as np

    rng = np.random.default_rng([args.seed, 1])
    # Rows in chunks (a memory-mapped DATA is never read whole); the noise is drawn chunk
    # after chunk in row order, the same stream as one draw for all rows.
    step = args.chunk_size or 65536
    chunks = [np.asarray(X[i:i + step]) for i in range(0, X.shape[0], step)] if isinstance(
        X, np.memmap) or args.chunk_size else [X]
    per_row = np.concatenate([vae.elbo(params, c, rng.standard_normal(
        (c.shape[0], args.eval_samples, vae.n_latent))) for c in chunks])
    iw = np.concatenate([vae.iwae_bound(params, c, args.iwae_k, rng, n_repeats=1).value
                         for c in chunks])
    _say(args, f"{label}: ELBO {per_row.mean():.6f} nats per row ({args.eval_samples} noise "
               f"draws per row), IWAE L_{args.iwae_k} {iw.mean():.6f}")
    return {"elbo": float(per_row.mean()), "iwae": float(iw.mean()),
            "iwae_k": args.iwae_k}


def cmd_vae(args):
    from .files import load_matrix
    from .vae import VAE

    _check_destinations(args)
    X = load_matrix(args.data, binary=True, mmap=True)  # minibatches are gathered from it
    X_test = load_matrix(args.test, name="--test", binary=True) if args.test else None
    out = {}
    if args.load:
        _require_file(args.load)
        vae = VAE.load(args.load)
        params = vae.params_
        _check_features(X, vae.n_features, f"VAE loaded from {args.load}")
        _say(args, f"loaded {vae!r} from {args.load}")
    else:
        vae = VAE(X.shape[1], args.latent, hidden=_int_list_or_empty(args.hidden, "--hidden"),
                  activation=args.activation)
        if X_test is not None:
            _check_features(X_test, X.shape[1], f"VAE trained on DATA {args.data}",
                            source=f"--test {args.test}")
        _say(args, f"training {vae!r} on {X.shape[0]} rows for {args.epochs} epochs")
        bar = _progress(args, "training", args.epochs, "epochs")

        def show(epoch, h):
            info = {"train_ELBO": h["train_elbo"][-1]}
            if X_test is not None:
                info["test_ELBO"] = h["test_elbo"][-1]
            bar.update(**info)

        vae.fit(X, X_test, n_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                rng=args.seed, callback=show)
        bar.done()
        params = vae.params_
        out["history"] = vae.history_
        h = vae.history_
        _say(args, "ELBO per row by epoch (train: the mean over the epoch's minibatches "
                   "as they trained" + ("; test: one noise draw per row" if X_test is not None
                                        else "") + "):")
        for i, tr in enumerate(h["train_elbo"], 1):
            test = f"  test {h['test_elbo'][i - 1]:.6f}" if X_test is not None else ""
            _say(args, f"  {i:4d}  train {tr:.6f}{test}")
    if X_test is not None:
        _check_features(X_test, vae.n_features, "VAE", source=f"--test {args.test}")
    out["data"] = _vae_eval(args, vae, params, X, f"DATA {args.data}")
    if X_test is not None:
        out["test"] = _vae_eval(args, vae, params, X_test, f"--test {args.test}")
    if args.save:
        _say(args, f"model saved to {vae.save(args.save)}")
    if args.json:
        _write_json(args.json, out)
    return 0


# ----------------------------------------------------------------------------------------
# helmholtz
# ----------------------------------------------------------------------------------------

def cmd_helmholtz(args):
    import numpy as np

    from . import estimators as E
    from .files import load_matrix
    from .helmholtz import HelmholtzMachine

    _check_destinations(args)
    X = load_matrix(args.data, binary=True)
    if args.load:
        model = HelmholtzMachine.load(_require_file(args.load))
        _check_features(X, model.n_features, f"HelmholtzMachine loaded from {args.load}")
        _say(args, f"loaded HelmholtzMachine {model.arch.layer_sizes} from {args.load}")
    else:
        layers = _int_list(args.layers, "--layers") + (X.shape[1],)
        model = HelmholtzMachine(layers, hidden=_int_list_or_empty(args.hidden, "--hidden"),
                                 recognition_hidden=_int_list_or_empty(args.hidden, "--hidden"),
                                 rng=np.random.default_rng([args.seed, 0]))
        if args.method == "vimco" and args.k < 2:
            raise UserError(f"--k must be >= 2 for --method vimco, got {args.k}")
        uses_k = args.method in ("reweighted", "vimco")
        _say(args, f"training HelmholtzMachine {layers} by {args.method}, {args.updates} "
                   f"updates, batch {args.batch_size}"
                   + (f", k = {args.k} samples per row" if uses_k else ""))
        n_rec = min(args.updates, 20)
        record_every = max(args.updates // n_rec, 1)
        bar = _progress(args, "training", args.updates, "updates")

        def show(model):  # called at each record: drives the progress line only
            bar.update(min(bar.count + record_every, args.updates) - bar.count)
            return 0.0

        model.fit(X, method=args.method, n_updates=args.updates, batch_size=args.batch_size,
                  learning_rate=args.lr, k=args.k, record_every=record_every, monitor=show,
                  rng=np.random.default_rng([args.seed, 1]))
        bar.done()
        h = model.history_
        h["monitor"] = []  # the progress line's placeholders, not a monitored quantity
        _say(args, "mean log w = log p(x,z) - log q(z|x) on the training samples"
                   + (" (IWAE estimate log mean_k w)" if uses_k else "") + ":")
        for u, o in zip(h["update"], h["objective"]):
            _say(args, f"  {u:>10d} updates  {o:.6f}")
    out = {"layer_sizes": list(model.arch.layer_sizes), "n_latent": model.n_latent}
    rng = np.random.default_rng([args.seed, 2])
    if model.n_latent <= args.max_exact_latent:
        log_px = np.asarray(E.exact_log_marginal(model, X))
        kl = np.asarray(E.exact_kl_to_posterior(model, X))
        out.update(log_likelihood=float(log_px.mean()), elbo=float((log_px - kl).mean()),
                   exact=True)
        _say(args, f"exact mean log p(x): {log_px.mean():.6f} nats; exact mean ELBO: "
                   f"{(log_px - kl).mean():.6f} (enumeration over 2^{model.n_latent} latents)")
    else:
        iw = E.iwae_bound(model, X, args.iwae_k, rng, n_repeats=1)
        el = E.elbo(model, X, 100, rng)
        out.update(iwae=float(iw.value.mean()), elbo=float(el.value.mean()), exact=False,
                   iwae_k=args.iwae_k)
        _say(args, f"mean IWAE L_{args.iwae_k}: {iw.value.mean():.6f} nats; mean ELBO "
                   f"(100 samples): {el.value.mean():.6f} ({model.n_latent} latents: too many "
                   f"to enumerate, see --max-exact-latent)")
    if args.save:
        _say(args, f"model saved to {model.save(args.save)}")
    if args.json:
        _write_json(args.json, out)
    return 0


# ----------------------------------------------------------------------------------------
# conformance
# ----------------------------------------------------------------------------------------

def cmd_conformance(args):
    from . import conformance as C

    if args.action == "write":
        if args.results is not None or args.cases:
            raise UserError("conformance write takes only DIR (and --seed)")
        manifest = C.write(args.dir, seed=args.seed)
        n_out = sum(len(c["outputs"]) for c in manifest["cases"])
        _say(args, f"wrote {len(manifest['cases'])} cases ({n_out} expected outputs) to "
                   f"{args.dir}: manifest.json, inputs.npz, expected.npz (format "
                   f"{C.FORMAT} version {C.FORMAT_VERSION}, lvmref {manifest['lvmref_version']})")
        return 0
    if args.results is None:
        raise UserError("conformance check needs DIR and RESULTS.npz")
    rows = C.check(args.dir, args.results, args.cases)
    _say(args, C.format_table(rows))
    return 0 if all(r.passed for r in rows) else 1


# ----------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------

def _number_type(convert, strict, what):
    """argparse ``type=``: ``convert(text)`` that must be finite and > 0 (``strict``) or >= 0."""

    def parse(text):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(v) and (v > 0 if strict else v >= 0)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v

    return parse


_positive_int = _number_type(int, True, "a positive integer")
_nonneg_int = _number_type(int, False, "an integer >= 0")
_positive_float = _number_type(float, True, "a positive finite number")
_nonneg_float = _number_type(float, False, "a finite number >= 0")


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (when it has a meaningful one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or "%(default)" in text or not action.option_strings):
            return text
        return text + (" (default: none)" if default == "" else " (default: %(default)s)")


class _TopHelpFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """The top-level help: its epilog (the examples of the module docstring) keeps its
    lines."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line ``lvmref: error: ...`` (exit status 2), like user errors;
    help shows every default and the choices."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        sys.stderr.write(f"lvmref: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def _library_default(func, name):
    """The library's own default of ``func``'s argument ``name`` (one source of truth)."""
    import inspect

    return inspect.signature(func).parameters[name].default


def build_parser():
    from . import __version__
    from .helmholtz import HelmholtzMachine
    from .nn import ACTIVATIONS
    from .vae import VAE

    common = _Parser(add_help=False)
    common.add_argument("--seed", type=_nonneg_int, default=0,
                        help="seed of all randomness")
    common.add_argument("--quiet", "-q", action="store_true", help="print nothing")

    parser = _Parser(
        prog="lvmref",
        description="lvmref: NumPy/Numba reference implementation of latent variable models.",
        epilog=("examples:\n" + __doc__.split("Examples::", 1)[1].strip("\n")
                if __doc__ else None),  # (python -OO strips docstrings)
        formatter_class=_TopHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lvmref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", parents=[common],
                       help="train every model on built-in data and write a report",
                       description="Fit a Gaussian mixture by EM, a Helmholtz machine on "
                       "bars by wake-sleep and a VAE on binarized digits; write "
                       "OUT/report.md, OUT/metrics.json and figures (with matplotlib). "
                       "Runs NumPy's BLAS on one thread unless OPENBLAS_NUM_THREADS is set.")
    p.add_argument("--out", default="lvmref-demo", help="output directory")
    p.add_argument("--quick", action="store_true", help="short smoke-test run (seconds)")
    p.set_defaults(func=cmd_demo)

    outputs = _Parser(add_help=False)
    outputs.add_argument("--save", metavar="MODEL.npz", help="save the model to this file")
    outputs.add_argument("--json", metavar="FILE.json", help="also write the results as JSON")
    data_help = ("(n_samples, n_features) .csv (comma-separated numbers, no header) or .npy; "
                 "rows are samples")
    binary_help = "binary (0/1) " + data_help

    p = sub.add_parser("gmm", parents=[common, outputs],
                       help="fit a Gaussian mixture by EM to DATA (.csv or .npy)",
                       description="Fit a Gaussian mixture with K components by EM "
                       "(-k K), or evaluate a saved one (--load MODEL.npz), on DATA.")
    p.add_argument("data", metavar="DATA", help=data_help)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("-k", "--n-components", dest="k", type=_positive_int, metavar="K",
                      help="number of components to fit")
    mode.add_argument("--load", metavar="MODEL.npz",
                      help="load a saved model and evaluate it on DATA (no fitting)")
    p.add_argument("--covariance-type", default="full",
                   choices=("full", "tied", "diag", "spherical"), help="covariance model")
    p.add_argument("--tol", type=_nonneg_float, default=1e-3,
                   help="stop when the mean log-likelihood changes by less")
    p.add_argument("--reg-covar", type=_nonneg_float, default=1e-6,
                   help="added to the covariance diagonals")
    p.add_argument("--max-iter", type=_positive_int, default=100, help="EM iterations")
    p.add_argument("--n-init", type=_positive_int, default=1, help="restarts")
    p.add_argument("--chunk-size", type=_positive_int, default=None, metavar="ROWS",
                   help="rows per chunk of EM (a .npy DATA is memory-mapped and read in "
                   "chunks of ~64 MiB working memory by default; a .csv is read whole)")
    p.set_defaults(func=cmd_gmm)

    p = sub.add_parser("vae", parents=[common, outputs],
                       help="train a VAE (Bernoulli decoder) on binary DATA (.npy or .csv)")
    p.add_argument("data", metavar="DATA", help=binary_help)
    p.add_argument("--load", metavar="MODEL.npz",
                   help="load a saved VAE and evaluate it on DATA (no training)")
    p.add_argument("--test", metavar="TEST", help="held-out binary data, evaluated per epoch")
    p.add_argument("--latent", type=_positive_int, default=10, help="n_latent")
    p.add_argument("--hidden", default="200", help="hidden widths, e.g. 200 or 256,128")
    p.add_argument("--activation", default="tanh", choices=tuple(ACTIVATIONS),
                   help="hidden activation")
    p.add_argument("--epochs", type=_positive_int, default=100, help="passes over DATA")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="rows per step")
    p.add_argument("--lr", type=_positive_float, default=_library_default(VAE.fit, "lr"),
                   help="Adam step size")
    p.add_argument("--iwae-k", type=_positive_int, default=100,
                   help="samples of the IWAE bound in the evaluation")
    p.add_argument("--eval-samples", type=_positive_int, default=10,
                   help="noise draws per row for the evaluation ELBO")
    p.add_argument("--chunk-size", type=_positive_int, default=None, metavar="ROWS",
                   help="rows per chunk of the evaluation (a .npy DATA is memory-mapped; "
                   "training gathers each minibatch from it; default 65536 rows for a "
                   ".npy); the numbers do not depend on it")
    p.set_defaults(func=cmd_vae)

    p = sub.add_parser("helmholtz", parents=[common, outputs],
                       help="train a Helmholtz machine on binary DATA (.npy or .csv)")
    p.add_argument("data", metavar="DATA", help=binary_help)
    p.add_argument("--load", metavar="MODEL.npz",
                   help="load a saved Helmholtz machine and evaluate it on DATA")
    p.add_argument("--layers", default="1,8",
                   help="latent layer sizes top to bottom; the pixel layer is added")
    p.add_argument("--hidden", default="", help="deterministic hidden widths of each MLP")
    p.add_argument("--method", default="wake-sleep",
                   choices=("wake-sleep", "reweighted", "reinforce", "vimco"),
                   help="training method")
    p.add_argument("--k", type=_positive_int,
                   default=_library_default(HelmholtzMachine.fit, "k"), metavar="K",
                   help="samples from q per data row for --method reweighted and vimco "
                   "(>= 2 for vimco; unused by the other methods)")
    p.add_argument("--updates", type=_positive_int, default=100_000, help="parameter updates")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="rows per update")
    p.add_argument("--lr", type=_positive_float,
                   default=_library_default(HelmholtzMachine.fit, "learning_rate"),
                   help="learning rate of the generative and recognition nets")
    p.add_argument("--iwae-k", type=_positive_int, default=1000,
                   help="samples of the IWAE bound when log p(x) cannot be enumerated")
    p.add_argument("--max-exact-latent", type=_nonneg_int, default=16,
                   help="enumerate log p(x) exactly up to this many latent units")
    p.set_defaults(func=cmd_helmholtz)

    p = sub.add_parser("conformance",
                       help="write golden test vectors, or check another implementation's "
                       "outputs against them",
                       description="'write DIR' writes DIR/manifest.json, DIR/inputs.npz and "
                       "DIR/expected.npz (--seed chooses other inputs; the default gives the "
                       "published vectors). 'check DIR RESULTS.npz' compares the arrays of "
                       "RESULTS.npz (keys <case>/<quantity>, as in expected.npz) with the "
                       "expected outputs, prints a table and exits 0 only when all pass (1 "
                       "otherwise).")
    p.add_argument("action", choices=("write", "check"))
    p.add_argument("dir", metavar="DIR", help="directory of the vectors")
    p.add_argument("results", metavar="RESULTS.npz", nargs="?",
                   help="the other implementation's outputs (check only)")
    p.add_argument("--cases", action="append", metavar="PATTERN",
                   help="check only cases matching this shell pattern, e.g. 'vae.*' "
                   "(repeatable; default all)")
    p.add_argument("--seed", type=_nonneg_int, default=20260,
                   help="seed of the inputs (write only; default 20260, the published set)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    p.set_defaults(func=cmd_conformance)
    return parser


def _one_blas_thread_by_default():
    """Default to one BLAS thread for the demo (environment variables already set win).

    Its matrices are small (e.g. (100, 200) @ (200, 64) per VAE step); on a busy 2-core
    machine multi-threaded OpenBLAS spin-waits and a VAE epoch measured ~10x slower than
    on one thread. Takes effect only if NumPy is not imported yet (the console script and
    ``python -m lvmref``), because BLAS reads these variables when it loads.
    """
    if "numpy" not in sys.modules:
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv=None) -> int:
    """Entry point of the ``lvmref`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: one line on stderr, exit status 2
    if args.command == "demo":
        _one_blas_thread_by_default()
    import numpy as np

    try:
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            return int(args.func(args) or 0)
    except (UserError, OSError, ValueError, TypeError) as exc:
        print(f"lvmref: error: {_first_line(exc)}", file=sys.stderr)
    except (FloatingPointError, ArithmeticError) as exc:
        hint = " -- try a smaller --lr" if hasattr(args, "lr") else ""
        print(f"lvmref: error: the computation diverged numerically ({_first_line(exc)})"
              f"{hint}", file=sys.stderr)
    except KeyboardInterrupt:  # pragma: no cover
        print("lvmref: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback; name what failed
        print(f"lvmref: error: internal error in '{args.command}': {type(exc).__name__}: "
              f"{_first_line(exc)} (please report this)", file=sys.stderr)
    return EXIT_USAGE
