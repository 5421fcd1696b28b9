"""Named suites: which tasks, models, training sizes and seeds a run covers.

Each suite says what it runs and how long it takes. Flags given with ``--suite`` override that
part of it (``gdbench run --suite quick --seeds 3``).
"""

from __future__ import annotations

import dataclasses
import difflib

CLASSICAL = ("gnb", "gnb_shared", "bnb", "lda", "qda", "logreg", "linsvm", "mlp")
NEURAL_GENERATIVE = ("gmm", "vae", "flow", "made")
HYBRID = ("hybrid", "gan", "jem")
ALL_MODELS = CLASSICAL + NEURAL_GENERATIVE + HYBRID
#: The lambda sweep of the blended objective: dense near 0, where the conditional term starts
#: to matter (the generative term sums over D features; see models/hybrid/blend.py).
LAMBDA_SWEEP = tuple(
    f"hybrid?lam={lam}" for lam in ("0", "0.003", "0.01", "0.03", "0.1", "0.3", "1")
)


class SuiteError(ValueError):
    """An unknown suite name."""


@dataclasses.dataclass(frozen=True)
class Suite:
    """A suite's grid. ``sizes=None`` means ``size_count`` log-spaced sizes per task, from
    ``max(smallest, 2C)`` to the task's whole training pool (see ``gdbench.plan.auto_sizes``)."""

    name: str
    doc: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    seeds: int
    sizes: tuple[int, ...] | None = None
    size_count: int = 6
    smallest: int = 10
    #: (generative, discriminative, what the pair tests): the pairs whose crossover the report
    #: analyses first; without any, it compares every generative x discriminative pair.
    pairs: tuple[tuple[str, str, str], ...] = ()
    #: Also run the robustness step (``gdbench.robustness``): OOD detection against each task's
    #: paired OOD set (``gdbench.tasks.ood.OOD_PAIRS``) and accuracy with missing features.
    robustness: bool = False
    #: Score the samples of models that sample (``gdbench.quality_programs.run_quality``);
    #: ``gdbench run --quality`` / ``--no-quality`` override it.
    quality: bool = True


QUICK = Suite(
    name="quick",
    doc=(
        "The classical models of both paradigms, the VAE, the flow and the blended "
        "generative/discriminative objective (hybrid) on four offline "
        "tasks (real two-class data, two-class and binarized ten-class digits, a synthetic "
        "task with known Bayes accuracy and density), 6 sizes x 5 seeds, with scikit-learn's "
        "GaussianNB, LogisticRegression, DecisionTreeClassifier and MLPClassifier beside them "
        "as non-JAX references (sk:, run on the CPU on the same subsets). About 4 minutes "
        "on a 2-core CPU from a cold compilation cache, 2 warm. Run: gdbench run --suite quick"
    ),
    tasks=("breast_cancer", "digits_2v3", "digits_bin", "gauss_corr"),
    models=(
        *CLASSICAL,
        "vae",
        "flow",
        "hybrid",
        "sk:GaussianNB",
        "sk:LogisticRegression",
        "sk:DecisionTreeClassifier",
        "sk:MLPClassifier",
    ),
    seeds=5,
)

NGJORDAN = Suite(
    name="ngjordan",
    doc=(
        "Ng & Jordan (2001): naive Bayes against logistic regression with negligible "
        "regularization (C=1e4) on identical subsets, Gaussian NB with shared variances for "
        "continuous features and Bernoulli NB (Laplace smoothing) for binary ones, plus the "
        "variants that can change the answer (per-class-variance NB, regularized logistic "
        "regression, LDA); on digits 0v1 and 2v3, breast cancer, binarized digits and the "
        "synthetic tasks; 12 sizes from 6 examples (3 per class) to the whole pool x 100 seeds. "
        "The report gives each pair's crossover size with its CI. "
        "Run: gdbench run --suite ngjordan"
    ),
    tasks=("digits_0v1", "digits_2v3", "breast_cancer", "digits_bin", "gauss_nb", "gauss_corr"),
    models=("gnb_shared", "bnb", "logreg?C=10000", "gnb", "logreg", "lda"),
    seeds=100,
    size_count=12,
    smallest=6,
    pairs=(
        ("gnb_shared", "logreg?C=10000", "paper pairing, continuous features"),
        ("bnb", "logreg?C=10000", "paper pairing, binary features"),
        ("gnb", "logreg?C=10000", "variant: per-class variances"),
        ("gnb_shared", "logreg", "variant: regularized logistic regression (C=1)"),
        ("lda", "logreg?C=10000", "variant: LDA (full shared covariance)"),
    ),
    # A study of classification accuracy against training size: the sample-quality step
    # (sampling, feature-space metrics, CAS) took most of a warm run's seconds (breast_cancer,
    # 5 seeds: 15 of 21 s) and no figure of the study uses it.
    quality=False,
)

FULL = Suite(
    name="full",
    doc=(
        "Every offline task x every model, 8 sizes x 20 seeds. Not yet timed (estimate: "
        "30 minutes on a 2-core CPU). Run: gdbench run --suite full"
    ),
    tasks=(
        "breast_cancer",
        "wine",
        "iris",
        "digits",
        "digits_0v1",
        "digits_2v3",
        "digits_bin",
        "gauss_nb",
        "gauss_corr",
        "gauss_quad",
    ),
    models=ALL_MODELS,
    seeds=20,
    size_count=8,
)

LIKELIHOOD = Suite(
    name="likelihood",
    doc=(
        "Every generative model's test log-likelihood (bits/dim) and Bayes-rule accuracy next "
        "to the discriminative models' accuracy, on dequantized digits, binarized digits and "
        "the three synthetic tasks with known densities; 4 sizes up to the whole pool x 5 "
        "seeds. About 7 minutes on a 2-core CPU. Run: gdbench run --suite likelihood"
    ),
    tasks=("digits", "digits_bin", "gauss_nb", "gauss_corr", "gauss_quad"),
    models=(*CLASSICAL, *NEURAL_GENERATIVE, "hybrid"),
    seeds=5,
    size_count=4,
)

HYBRIDS = Suite(
    name="hybrids",
    doc=(
        "Both paradigms working together: the class-conditional GAN, the JEM energy "
        "classifier and the lambda sweep of the blended objective lam*log p(x,y) + "
        "(1-lam)*log p(y|x) (lam = 0 ... 1), beside Gaussian NB with shared variances (lam = 1), "
        "logistic regression and the VAE, on a synthetic task, breast cancer and 10-class "
        "digits; 4 sizes x 5 seeds. Every model that samples also gets the sample-quality "
        "metrics (feature-space Fréchet distance, classifier score, precision/recall, CAS). "
        "Run: gdbench run --suite hybrids"
    ),
    tasks=("gauss_corr", "breast_cancer", "digits"),
    models=("gan", "jem", *LAMBDA_SWEEP, "gnb_shared", "logreg", "vae"),
    seeds=5,
    size_count=4,
)

IMAGE_MODELS = (
    "gnb",
    "bnb",
    "lda",
    "logreg?solver=adam",
    "mlp",
    "cnn",
    "vae",
    "conv_vae",
    "flow",
    "conv_flow",
    "made",
    "hybrid",
    "gan",
    "jem",
)

IMAGES = Suite(
    name="images",
    doc=(
        "Every paradigm on the standard image benchmarks from TensorFlow Datasets, with their "
        "standard train/test splits: MNIST, Fashion-MNIST and CIFAR-10 (integer pixels "
        "dequantized, so densities give bits/dim) and binarized MNIST; the CNN, the "
        "convolutional VAE and flow beside the classical, MLP and hybrid models; logistic "
        "regression by AdamW (Newton's Hessian is too large for 785 x 10 parameters); "
        "4 sizes from 100 examples to the whole 50,000-60,000 x 3 seeds; OOD detection "
        "Fashion-MNIST <-> MNIST and CIFAR-10 -> SVHN, and missing features. Needs the data "
        "prepared once (gdbench prepare tfds:mnist tfds:fashion_mnist tfds:cifar10 "
        "tfds:svhn_cropped) and an accelerator (not yet timed; conv_flow alone takes 0.8 s "
        "per step on 28x28 images on a 2-core CPU). "
        "Run: gdbench run --suite images"
    ),
    tasks=("tfds:mnist", "tfds:fashion_mnist", "tfds:cifar10", "tfds:mnist?binarize=0.5"),
    models=IMAGE_MODELS,
    seeds=3,
    size_count=4,
    smallest=100,
    robustness=True,
)

ROBUSTNESS = Suite(
    name="robustness",
    doc=(
        "Where the paradigms differ, offline: out-of-distribution detection by log p(x) "
        "(generative models) and by max-softmax (every model) against a lower-contrast copy "
        "of the test set (digits; where likelihood-based detection fails, as Nalisnick et al. "
        "2019 found for Fashion-MNIST -> MNIST) and mirrored binary digits, and accuracy with "
        "25/50/75 % of the features missing: the Gaussian generative models marginalize them, "
        "the others impute the training mean; 4 sizes x 5 seeds. About 3 minutes on a 2-core "
        "CPU from a cold compilation cache. Run: gdbench run --suite robustness"
    ),
    tasks=("digits", "digits_bin"),
    models=("gnb", "gnb_shared", "bnb", "lda", "qda", "gmm", "vae", "flow", "logreg", "mlp", "cnn"),
    seeds=5,
    size_count=4,
    robustness=True,
)

SUITES = {s.name: s for s in (QUICK, NGJORDAN, LIKELIHOOD, HYBRIDS, ROBUSTNESS, IMAGES, FULL)}


def get(name: str) -> Suite:
    if name not in SUITES:
        close = difflib.get_close_matches(name, list(SUITES), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SuiteError(f"unknown suite '{name}'{hint}; valid: {', '.join(SUITES)}")
    return SUITES[name]
