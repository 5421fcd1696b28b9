"""Models by name.

A model spec is ``NAME`` or ``NAME?key=value&key=value`` (e.g. ``logreg?C=inf``,
``mlp?hidden=64-64&steps=800``): the name picks the class, the query overrides hyperparameters
of its constructor. Classes are imported lazily, so listing models imports no model code.

``sk:<Estimator>`` names a scikit-learn estimator run as a non-JAX reference (paradigm
``reference``, see ``gdbench.reference``), e.g. ``sk:LogisticRegression?C=10000``; its
hyperparameters are the estimator's ``get_params()`` names. scikit-learn is imported only when
such a spec is parsed.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
import re
import types
from typing import Any

from gdbench.models import base

#: name -> (module, class, one-line description). Order is the display order.
REGISTRY: dict[str, tuple[str, str, str]] = {
    "gnb": (
        "gdbench.models.generative.naive_bayes",
        "GaussianNB",
        "Gaussian naive Bayes, per-class variances",
    ),
    "gnb_shared": (
        "gdbench.models.generative.naive_bayes",
        "GaussianNBShared",
        "Gaussian naive Bayes, variances shared across classes (linear)",
    ),
    "bnb": (
        "gdbench.models.generative.naive_bayes",
        "BernoulliNB",
        "Bernoulli naive Bayes, Laplace smoothing",
    ),
    "lda": (
        "gdbench.models.generative.discriminant",
        "LDA",
        "linear discriminant analysis, shrunk pooled covariance",
    ),
    "qda": (
        "gdbench.models.generative.discriminant",
        "QDA",
        "quadratic discriminant analysis, regularized covariances",
    ),
    "gmm": (
        "gdbench.models.generative.gmm",
        "GMM",
        "class-conditional Gaussian mixture, EM in jit",
    ),
    "vae": (
        "gdbench.models.generative.vae",
        "VAE",
        "class-conditional VAE; log p(x) as IWAE bound, ELBO beside it",
    ),
    "conv_vae": (
        "gdbench.models.generative.conv_vae",
        "ConvVAE",
        "class-conditional convolutional VAE for image tasks; IWAE bound, ELBO beside it",
    ),
    "flow": (
        "gdbench.models.generative.flow",
        "Flow",
        "class-conditional RealNVP flow (affine couplings), exact likelihood, AdamW",
    ),
    "conv_flow": (
        "gdbench.models.generative.conv_flow",
        "ConvFlow",
        "class-conditional RealNVP for images (conv couplings, squeezes), exact likelihood",
    ),
    "made": (
        "gdbench.models.generative.made",
        "MADE",
        "class-conditional MADE for binary data (x > binarize), exact likelihood, AdamW",
    ),
    "logreg": (
        "gdbench.models.discriminative.logistic",
        "LogisticRegression",
        "L2 logistic regression, solved to its optimum (Newton; L-BFGS first for >2 classes)",
    ),
    "linsvm": (
        "gdbench.models.discriminative.svm",
        "LinearSVM",
        "linear SVM (squared hinge), Platt-scaled probabilities",
    ),
    "mlp": (
        "gdbench.models.discriminative.mlp",
        "MLP",
        "ReLU MLP, AdamW, validation model selection",
    ),
    "cnn": (
        "gdbench.models.discriminative.cnn",
        "CNN",
        "convnet for image tasks (stride-2 3x3 convs, dense head), AdamW, validation selection",
    ),
    "jem": (
        "gdbench.models.hybrid.jem",
        "JEM",
        "JEM energy classifier (logits as an energy over x), short-run SGLD",
    ),
    "hybrid": (
        "gdbench.models.hybrid.blend",
        "BlendedGaussian",
        "blended objective lam*log p(x,y) + (1-lam)*log p(y|x), Gaussian class-conditionals",
    ),
    "gan": (
        "gdbench.models.hybrid.gan",
        "GAN",
        "class-conditional GAN (projection D + auxiliary classifier), non-saturating loss",
    ),
}


#: Prefix of the scikit-learn reference models.
SK_PREFIX = "sk:"

#: sk:<Estimator> -> (scikit-learn module, one-line description). Order is the display order.
SKLEARN: dict[str, tuple[str, str]] = {
    "GaussianNB": ("sklearn.naive_bayes", "Gaussian naive Bayes"),
    "BernoulliNB": ("sklearn.naive_bayes", "Bernoulli naive Bayes"),
    "LinearDiscriminantAnalysis": ("sklearn.discriminant_analysis", "LDA"),
    "QuadraticDiscriminantAnalysis": ("sklearn.discriminant_analysis", "QDA"),
    "LogisticRegression": ("sklearn.linear_model", "logistic regression (L2, lbfgs)"),
    "SVC": ("sklearn.svm", "kernel SVM (RBF), Platt-calibrated by CalibratedClassifierCV"),
    "LinearSVC": ("sklearn.svm", "linear SVM, Platt-calibrated by CalibratedClassifierCV"),
    "KNeighborsClassifier": ("sklearn.neighbors", "k nearest neighbours"),
    "DecisionTreeClassifier": ("sklearn.tree", "decision tree"),
    "RandomForestClassifier": ("sklearn.ensemble", "random forest"),
    "MLPClassifier": ("sklearn.neural_network", "MLP (adam)"),
}

#: Estimators without probabilities of their own: gdbench wraps them in
#: ``CalibratedClassifierCV(method="sigmoid", ensemble=False)`` (scikit-learn 1.9 deprecates
#: ``SVC(probability=True)`` in favour of it). See ``gdbench.reference``.
SK_CALIBRATED = ("SVC", "LinearSVC")

#: Constructor parameters gdbench sets itself (not hyperparameters of a spec).
_SK_FIXED = ("random_state", "probability")

SK_CALIBRATION = (
    "Platt scaling (sigmoid): CalibratedClassifierCV(ensemble=False), stratified k-fold "
    "cross-validation on the cell's training subset (shuffled with the cell's seed), "
    "k = min(5, smallest class count)"
)


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
    #: SHA-256 of a user model's source (``register``), empty for built-in models: part of
    #: ``config_json``, hence of the compiled programs' cache key and of the run's identity.
    source: str = ""

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
        cfg.pop("image_shape", None)
        cfg.update(dict(self.hparams))
        return cfg

    def config_json(self) -> str:
        """Hyperparameters and how probabilities are obtained (e.g. Platt scaling), as JSON."""

        def enc(v):
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return list(v) if isinstance(v, tuple) else v

        config = {k: enc(v) for k, v in sorted(self.config.items())}
        source = {"source": self.source} if self.source else {}
        return json.dumps({**config, "calibration": self.cls.calibration, **source})

    @property
    def traced(self) -> dict[str, float]:
        """The values of the class's ``traced_hyperparameters`` (defaults included), which the
        engine passes to the grid programs as arguments."""
        names = getattr(self.cls, "traced_hyperparameters", ())
        return {k: float(self.config[k]) for k in names}

    def program_json(self) -> str:
        """``config_json`` without the traced hyperparameters: what a grid program is built
        from (two specs that differ only in those share their programs)."""
        config = json.loads(self.config_json())
        for k in self.traced:
            config.pop(k, None)
        return json.dumps(config, sort_keys=True)

    def build(
        self,
        dim: int,
        num_classes: int,
        rngs,
        feature_kind: str | None = None,
        image_shape: tuple[int, ...] | None = None,
        traced: dict[str, Any] | None = None,
    ):
        """An instance for a task of ``dim`` features and ``num_classes`` classes. A model whose
        constructor takes ``feature_kind`` ("real", "binary", "integer") is told the task's;
        one whose constructor takes ``image_shape`` is told the task's ``(H, W)`` or
        ``(H, W, C)`` (None for a task that is not an image task). ``traced``: values (traced
        scalars inside a grid program) that replace the ``traced_hyperparameters``."""
        kwargs = dict(self.hparams)
        kwargs.update(traced or {})
        params = self._params()
        if feature_kind is not None and "feature_kind" in params:
            kwargs["feature_kind"] = feature_kind
        if "image_shape" in params:
            kwargs["image_shape"] = None if image_shape is None else tuple(image_shape)
        return self.cls(dim, num_classes, rngs=rngs, **kwargs)

    def _params(self):
        return inspect.signature(self.cls.__init__).parameters


#: User models registered in this process (``register``): name -> (class, source hash).
_USER: dict[str, tuple[type, str]] = {}
#: The paradigms a model may declare.
PARADIGMS = ("discriminative", "generative", "hybrid")


def register(name: str, cls: type, source: str = "") -> None:
    """Make ``name`` (e.g. ``my_models.py:Tiny``) resolve to the model class ``cls`` in this
    process; ``source`` (a hash of its code) joins its configuration. Checks the protocol
    (``check_protocol``). ``gdbench.plugins`` calls this for specs, entry points and classes
    passed to ``gdbench.run``."""
    check_protocol(cls, name)
    _USER[name] = (cls, source)


def check_protocol(cls: Any, name: str) -> None:
    """Raise ``ModelSpecError`` (one line, naming what is missing) unless ``cls`` is a model
    class: a class with a ``paradigm`` in ``PARADIGMS``, ``fit_plan()`` and
    ``predict_logits(x)``; a generative one also the ``Density`` protocol (``log_prob(x, y)``,
    ``log_prior()``); a constructor ``(dim, num_classes, *, rngs, ...)``; and each optional
    ability it has (``gdbench.models.base.ABILITIES``) implemented as its protocol types it:
    methods callable with the protocol's arguments, ``needs_image`` a bool."""
    if not isinstance(cls, type):
        raise ModelSpecError(f"model '{name}' is not a class but a {type(cls).__name__}")
    missing = [m for m in ("fit_plan", "predict_logits") if not callable(getattr(cls, m, None))]
    paradigm = getattr(cls, "paradigm", None)
    if paradigm not in PARADIGMS:
        missing.append(f"paradigm (one of {', '.join(PARADIGMS)}; it has {paradigm!r})")
    if paradigm == "generative":
        missing += [m for m in ("log_prob", "log_prior") if not callable(getattr(cls, m, None))]
    params = inspect.signature(cls.__init__).parameters
    if "rngs" not in params or len(params) < 4:
        missing.append("a constructor (self, dim, num_classes, *, rngs, ...)")
    missing += _ability_errors(cls)
    if missing:
        raise ModelSpecError(
            f"model '{name}' ({cls.__module__}.{cls.__qualname__}) does not follow the model "
            f"protocol (models.base.Model): missing {'; '.join(missing)}"
        )


def _ability_errors(cls: type) -> list[str]:
    """What the class gets wrong of the optional abilities it has: a protocol method that is
    not callable or does not take the protocol's arguments, a ``needs_image`` not a bool."""
    errors = []
    for ability, protocol in base.ABILITIES.items():
        for member in base.ability_members(protocol):
            value = getattr(cls, member, None)
            if value is None:
                continue
            expected = vars(protocol).get(member)
            if expected is None:  # a data member (ImageInput.needs_image)
                if not isinstance(value, bool):
                    errors.append(f"{member} as a bool ({ability}; it has {value!r})")
                continue
            want = [p for p in inspect.signature(expected).parameters if p != "self"]
            if not callable(value) or not _takes(value, len(want)):
                errors.append(f"{member}({', '.join(want)}) ({ability}, {protocol.__name__})")
    return errors


def _takes(method: Any, count: int) -> bool:
    """Whether the (unbound) method can be called with ``self`` and ``count`` positional
    arguments."""
    try:
        inspect.signature(method).bind(*([None] * (count + 1)))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): trust it
        return True
    return True


def names() -> list[str]:
    """Every model name: the JAX models, user models registered in this process, then the
    ``sk:<Estimator>`` references."""
    return [*REGISTRY, *_USER, *(SK_PREFIX + e for e in SKLEARN)]


def describe(name: str) -> str:
    """The one-line description of a model name (from ``names()``)."""
    if name.startswith(SK_PREFIX):
        return f"non-JAX scikit-learn reference (CPU): {SKLEARN[name[len(SK_PREFIX) :]][1]}"
    if name in _USER:
        cls = _USER[name][0]
        return (inspect.getdoc(cls) or f"{cls.__module__}.{cls.__qualname__}").splitlines()[0]
    return REGISTRY[name][2]


def paradigm_of(name: str) -> str:
    """The paradigm of a registered model (imports its module; "reference" for ``sk:``)."""
    if name.startswith(SK_PREFIX):
        return "reference"
    if name in _USER:
        return _USER[name][0].paradigm
    module, cls_name, _ = REGISTRY[name]
    return getattr(importlib.import_module(module), cls_name).paradigm


def get(spec: str) -> ModelSpec | ReferenceSpec:
    """Parse ``NAME[?k=v&...]`` into a ``ModelSpec`` (a ``ReferenceSpec`` for
    ``sk:<Estimator>``); raises ``ModelSpecError`` (one line, with a hint) for a bad spec."""
    name, _, query = spec.partition("?")
    if name.startswith(SK_PREFIX):
        return _get_reference(name, query)
    if name in _USER:
        cls, source = _USER[name]
    elif name in REGISTRY:
        module, cls_name, _ = REGISTRY[name]
        cls, source = getattr(importlib.import_module(module), cls_name), ""
    else:
        raise ModelSpecError(
            f"unknown model '{name}'{suggest(name, names())}; valid: {', '.join(names())}, "
            "or a model of your own: path/to/file.py:Class or package.module:Class"
        )
    params = inspect.signature(cls.__init__).parameters
    internal = ("rngs", "feature_kind", "image_shape")
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
        name=name, spec=canonical(name, overrides), cls=cls, hparams=tuple(hparams), source=source
    )
    _check_buildable(spec_obj)
    return spec_obj


def _check_buildable(spec: ModelSpec) -> None:
    """Build a tiny instance so that a bad hyperparameter value fails here, in one line."""
    from flax import nnx

    try:
        if "image_shape" in spec._params():
            # Image models: a tiny 4x4 image task, traced only (no eager compilation of the
            # initialisers, which took seconds per convolutional model on a busy 2-core CPU).
            nnx.eval_shape(lambda: spec.build(16, 2, nnx.Rngs(0), "real", (4, 4)))
        else:
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


@dataclasses.dataclass(frozen=True)
class ReferenceSpec:
    """A scikit-learn estimator with its hyperparameters: a non-JAX reference model.

    Duck-compatible with ``ModelSpec`` where the runner and the store need it (``name``,
    ``spec``, ``paradigm``, ``cls.calibration``, ``config_json``), but it is fitted by
    ``gdbench.reference``, never by the JAX engine (``build`` raises ``TypeError``).
    ``hparams`` holds the non-default overrides, sorted, with parsed values.
    """

    name: str
    spec: str
    estimator: str
    module: str
    hparams: tuple[tuple[str, Any], ...]

    paradigm = "reference"

    @property
    def calibrated(self) -> bool:
        """Whether probabilities come from a CalibratedClassifierCV wrapper (Platt scaling)."""
        return self.estimator in SK_CALIBRATED

    @property
    def cls(self) -> types.SimpleNamespace:
        """The class-level facts the runner reads from a model class."""
        calibration = SK_CALIBRATION if self.calibrated else "native predict_proba"
        return types.SimpleNamespace(
            paradigm="reference",
            calibration=calibration,
            needs_validation=False,
            likelihood_is_bound=False,
        )

    @property
    def estimator_class(self) -> type:
        """The scikit-learn estimator class (imports its module)."""
        return getattr(importlib.import_module(self.module), self.estimator)

    def make_estimator(self, seed: int | None = None):
        """A fresh, unfitted estimator with this spec's hyperparameters and, where the
        estimator takes one, ``random_state=seed`` (not yet wrapped for calibration)."""
        est = self.estimator_class()
        params = est.get_params()
        fixed = {"random_state": seed} if "random_state" in params else {}
        return est.set_params(**fixed, **dict(self.hparams))

    @property
    def config(self) -> dict[str, Any]:
        """The estimator's non-default constructor parameters (``random_state`` excluded)."""
        return dict(self.hparams)

    def config_json(self) -> str:
        """JSON of the non-default parameters, the estimator's import path, the scikit-learn
        version, how ``random_state`` is set and how probabilities are obtained."""
        import sklearn

        def enc(v):
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return list(v) if isinstance(v, tuple) else v

        config = {k: enc(v) for k, v in sorted(self.config.items())}
        takes_seed = "random_state" in self.estimator_class().get_params()
        return json.dumps(
            {
                **config,
                "random_state": "seed" if takes_seed else None,
                "sklearn": f"{self.module}.{self.estimator} {sklearn.__version__}",
                "calibration": self.cls.calibration,
            }
        )

    def build(self, *args, **kwargs):
        raise TypeError(
            f"model '{self.spec}' is a scikit-learn reference: it runs through "
            "gdbench.reference, not the JAX engine"
        )


_INT = re.compile(r"[+-]?\d+")


def _literal(text: str) -> Any:
    """A query value of a parameter whose default is None or a string: None, a bool, an int,
    a float or the text itself."""
    if text.lower() == "none":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parse_sk_value(text: str, default: Any) -> Any:
    if isinstance(default, bool | tuple):
        return _parse_value(text, default)
    if isinstance(default, int | float):
        value = _literal(text)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(text)
        return float(value) if isinstance(default, float) else value
    return _literal(text)


def _example(default: Any) -> str:
    return _format_value(default) if isinstance(default, tuple) else repr(default)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (``True`` is not ``1``, ``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _get_reference(name: str, query: str) -> ReferenceSpec:
    estimator = name[len(SK_PREFIX) :]
    if estimator not in SKLEARN:
        valid = [SK_PREFIX + e for e in SKLEARN]
        raise ModelSpecError(
            f"unknown scikit-learn reference '{name}'{suggest(name, valid)}; "
            f"valid: {', '.join(valid)}"
        )
    module = SKLEARN[estimator][0]
    cls = getattr(importlib.import_module(module), estimator)
    defaults = cls().get_params()
    tunable = [k for k, v in defaults.items() if k not in _SK_FIXED and not _same(v, "deprecated")]
    hparams: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, text = item.partition("=")
        if key not in tunable or not eq:
            raise ModelSpecError(
                f"model '{name}' has no hyperparameter '{key}'{suggest(key, tunable)}; "
                f"valid: {', '.join(tunable)} (write {name}?key=value)"
            )
        default = defaults[key]
        try:
            hparams[key] = _parse_sk_value(text, default)
        except ValueError:
            raise ModelSpecError(
                f"bad value '{text}' for {name} hyperparameter '{key}' "
                f"(expected {type(default).__name__}, like {_example(default)})"
            ) from None
    overrides = {k: v for k, v in sorted(hparams.items()) if not _same(v, defaults[k])}
    spec = ReferenceSpec(
        name=name,
        spec=canonical(name, overrides),
        estimator=estimator,
        module=module,
        hparams=tuple(overrides.items()),
    )
    try:
        spec.make_estimator(0)._validate_params()
    except (ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ModelSpecError(f"bad hyperparameters for model '{name}': {first}") from None
    return spec
