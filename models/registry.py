"""Models by name.

A model spec is ``NAME`` or ``NAME?key=value&key=value`` (e.g. ``logreg?C=inf``,
``mlp?hidden=64-64&steps=800``): the name picks the class, the query overrides hyperparameters
of its constructor. Classes are imported lazily, so listing models imports no model code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
from typing import Any

#: name -> (module, class, one-line description). Order is the display order.
REGISTRY: dict[str, tuple[str, str, str]] = {
    "gnb": (
        "models.generative.naive_bayes",
        "GaussianNB",
        "Gaussian naive Bayes, per-class variances",
    ),
    "gnb_shared": (
        "models.generative.naive_bayes",
        "GaussianNBShared",
        "Gaussian naive Bayes, variances shared across classes (linear)",
    ),
    "bnb": (
        "models.generative.naive_bayes",
        "BernoulliNB",
        "Bernoulli naive Bayes, Laplace smoothing",
    ),
    "lda": (
        "models.generative.discriminant",
        "LDA",
        "linear discriminant analysis, shrunk pooled covariance",
    ),
    "qda": (
        "models.generative.discriminant",
        "QDA",
        "quadratic discriminant analysis, regularized covariances",
    ),
    "gmm": (
        "models.generative.gmm",
        "GMM",
        "class-conditional Gaussian mixture, EM in jit",
    ),
    "vae": (
        "models.generative.vae",
        "VAE",
        "class-conditional VAE; log p(x) as IWAE bound, ELBO beside it",
    ),
    "flow": (
        "models.generative.flow",
        "Flow",
        "class-conditional RealNVP flow (affine couplings), exact likelihood, AdamW",
    ),
    "made": (
        "models.generative.made",
        "MADE",
        "class-conditional MADE for binary data (x > binarize), exact likelihood, AdamW",
    ),
    "logreg": (
        "models.discriminative.logistic",
        "LogisticRegression",
        "L2 logistic regression, Newton solver",
    ),
    "linsvm": (
        "models.discriminative.svm",
        "LinearSVM",
        "linear SVM (squared hinge), Platt-scaled probabilities",
    ),
    "mlp": ("models.discriminative.mlp", "MLP", "ReLU MLP, AdamW, validation model selection"),
}


class ModelSpecError(ValueError):
    """A model spec names no model or sets a hyperparameter it does not have."""


def suggest(name: str, valid: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid name, or an empty string."""
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


def _parse_value(text: str, default: Any) -> Any:
    if isinstance(default, tuple):
        sizes = tuple(int(v) for v in text.replace(",", "-").split("-") if v)
        if any(v < 1 for v in sizes):
            raise ValueError(text)
        return sizes
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model class with its hyperparameters; ``build`` makes an instance for a task.

    ``spec`` is the canonical spelling (see ``canonical``), used as the model's name in results.
    """

    name: str
    spec: str
    cls: type
    hparams: tuple[tuple[str, Any], ...]

    @property
    def paradigm(self) -> str:
        return self.cls.paradigm

    @property
    def config(self) -> dict[str, Any]:
        """Every constructor hyperparameter with its value (defaults included)."""
        params = self._params()
        cfg = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        cfg.pop("rngs", None)
        cfg.pop("feature_kind", None)
        cfg.update(dict(self.hparams))
        return cfg

    def config_json(self) -> str:
        """Hyperparameters and how probabilities are obtained (e.g. Platt scaling), as JSON."""

        def enc(v):
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return list(v) if isinstance(v, tuple) else v

        config = {k: enc(v) for k, v in sorted(self.config.items())}
        return json.dumps({**config, "calibration": self.cls.calibration})

    def build(self, dim: int, num_classes: int, rngs, feature_kind: str | None = None):
        """An instance for a task of ``dim`` features and ``num_classes`` classes. A model whose
        constructor takes ``feature_kind`` ("real", "binary", "integer") is told the task's."""
        kwargs = dict(self.hparams)
        if feature_kind is not None and "feature_kind" in self._params():
            kwargs["feature_kind"] = feature_kind
        return self.cls(dim, num_classes, rngs=rngs, **kwargs)

    def _params(self):
        return inspect.signature(self.cls.__init__).parameters


def names() -> list[str]:
    return list(REGISTRY)


def describe(name: str) -> str:
    return REGISTRY[name][2]


def paradigm_of(name: str) -> str:
    """The paradigm of a registered model (imports its module)."""
    module, cls_name, _ = REGISTRY[name]
    return getattr(importlib.import_module(module), cls_name).paradigm


def get(spec: str) -> ModelSpec:
    """Parse ``NAME[?k=v&...]`` into a ``ModelSpec``; raises ``ModelSpecError`` with a hint."""
    name, _, query = spec.partition("?")
    if name not in REGISTRY:
        raise ModelSpecError(
            f"unknown model '{name}'{suggest(name, names())}; valid: {', '.join(names())}"
        )
    module, cls_name, _ = REGISTRY[name]
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls.__init__).parameters
    internal = ("rngs", "feature_kind")
    tunable = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k not in internal]
    hparams = []
    for item in filter(None, query.split("&")):
        key, eq, text = item.partition("=")
        if key not in tunable or not eq:
            raise ModelSpecError(
                f"model '{name}' has no hyperparameter '{key}'{suggest(key, tunable)}; "
                f"valid: {', '.join(tunable)} (write {name}?key=value)"
            )
        default = params[key].default
        try:
            hparams.append((key, _parse_value(text, default)))
        except ValueError:
            raise ModelSpecError(
                f"bad value '{text}' for {name} hyperparameter '{key}' "
                f"(expected {type(default).__name__}, like {default!r})"
            ) from None
    overrides = {k: v for k, v in hparams if v != params[k].default}
    spec_obj = ModelSpec(
        name=name, spec=canonical(name, overrides), cls=cls, hparams=tuple(hparams)
    )
    _check_buildable(spec_obj)
    return spec_obj


def _check_buildable(spec: ModelSpec) -> None:
    """Build a tiny instance so that a bad hyperparameter value fails here, in one line."""
    from flax import nnx

    try:
        spec.build(2, 2, nnx.Rngs(0), "real")
    except (ValueError, TypeError, ArithmeticError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ModelSpecError(f"bad hyperparameters for model '{spec.name}': {first}") from None


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "-".join(str(v) for v in value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)


def canonical(name: str, overrides: dict[str, Any]) -> str:
    """One spelling per model: hyperparameters that differ from their defaults, sorted, with
    canonical values (``logreg?C=1e4`` and ``logreg?C=10000.0`` are both ``logreg?C=10000``;
    ``logreg?C=1`` is ``logreg``)."""
    if not overrides:
        return name
    return name + "?" + "&".join(f"{k}={_format_value(v)}" for k, v in sorted(overrides.items()))
