"""Statistics for closed-loop evaluation: intervals, tests, trial counts and aggregate metrics.

Two families, both on host (numpy / scipy), returning plain Python numbers so results go
straight into JSON:

- **Binomial success rates** (seed 001, section 24): one policy's `successes` of `trials`
  (`wilson_interval`, `clopper_pearson_interval`, `success_summary`); two policies' counts
  compared by Fisher's or Barnard's exact test (`fisher_exact_test`, `barnard_exact_test`); and
  the trials per arm needed to detect a difference (`min_trials_per_arm`).
- **Aggregates over a scores matrix** f[num_runs, num_tasks] (rows: independent runs, e.g. training
  seeds; columns: tasks), with rliable's definitions (Agarwal et al., 2021, "Deep RL at the Edge
  of the Statistical Precipice"): IQM, mean, median, optimality gap, stratified-bootstrap
  percentile intervals (`stratified_bootstrap_ci`, `aggregate_metrics`) and the probability of
  improvement (`probability_of_improvement`, `probability_of_improvement_ci`).

Every function that draws random numbers takes `rng` (an int seed or a `np.random.Generator`,
default seed 0), so the same call gives the same result.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from scipy import stats

_INTERVAL_METHODS = {"wilson": "wilson", "clopper-pearson": "exact"}
_TEST_ALTERNATIVES = ("two-sided", "greater", "less")
_BOOTSTRAP_METHODS = ("percentile", "basic")
# Resampled values held in memory at once by the bootstrap (bounds `scipy.stats.bootstrap`'s batch).
_BOOTSTRAP_BATCH_ELEMENTS = 4_000_000


# ------------------------------------------------------------------------------------------------
# Input checks.


def _count(value: Any, name: str) -> int:
  """`value` as a non-negative int; errors name the argument."""
  try:
    count = operator.index(value)
  except TypeError:
    raise TypeError(f"{name} must be an integer count, got {value!r}") from None
  if count < 0:
    raise ValueError(f"{name} must be >= 0, got {count}")
  return count


def _counts(successes: Any, trials: Any, successes_name: str = "successes",
            trials_name: str = "trials") -> tuple[int, int]:
  """Checked (successes, trials) with 0 <= successes <= trials and trials >= 1."""
  k = _count(successes, successes_name)
  n = _count(trials, trials_name)
  if n == 0:
    raise ValueError(f"{trials_name} is 0: a success rate needs at least one trial")
  if k > n:
    raise ValueError(f"{successes_name} ({k}) exceeds {trials_name} ({n})")
  return k, n


def _probability(value: Any, name: str, *, open_interval: bool = True) -> float:
  """`value` as a float in (0, 1) (or [0, 1] when not `open_interval`)."""
  x = float(value)
  ok = 0.0 < x < 1.0 if open_interval else 0.0 <= x <= 1.0
  if not ok:
    bounds = "(0, 1)" if open_interval else "[0, 1]"
    raise ValueError(f"{name} must be in {bounds}, got {value!r}")
  return x


def _choice(value: str, name: str, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
  return value


def _scores_matrix(scores: Any, name: str, *, min_runs: int = 1) -> np.ndarray:
  """`scores` as a finite f64[num_runs, num_tasks] with num_runs >= `min_runs`."""
  x = np.asarray(scores, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"{name} must be a [num_runs, num_tasks] matrix, got shape {x.shape}")
  if x.shape[1] == 0:
    raise ValueError(f"{name} has no tasks (shape {x.shape})")
  if x.shape[0] < min_runs:
    raise ValueError(f"{name} needs at least {min_runs} runs per task, got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains non-finite values")
  return x


# ------------------------------------------------------------------------------------------------
# One success rate.


class Interval(NamedTuple):
  """A confidence interval [low, high] for a success rate, as plain floats."""
  low: float
  high: float


def binomial_interval(successes: int, trials: int, confidence_level: float = 0.95,
                      method: str = "wilson") -> Interval:
  """Confidence interval for a success rate from `successes` of `trials` independent trials.

  Args:
    successes: number of successful trials, 0 <= successes <= trials.
    trials: number of trials, >= 1.
    confidence_level: two-sided coverage, in (0, 1).
    method: "wilson" (Wilson score interval; the default for reporting: close to nominal coverage
      even for small n and rates near 0 or 1) or "clopper-pearson" (exact: inverts the binomial
      test, coverage >= nominal, hence wider).

  Returns:
    Interval(low, high) within [0, 1], from `scipy.stats.binomtest(...).proportion_ci`.
  """
  k, n = _counts(successes, trials)
  level = _probability(confidence_level, "confidence_level")
  scipy_method = _INTERVAL_METHODS[_choice(method, "method", list(_INTERVAL_METHODS))]
  ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method=scipy_method)
  return Interval(float(ci.low), float(ci.high))


def wilson_interval(successes: int, trials: int, confidence_level: float = 0.95) -> Interval:
  """Wilson score interval for `successes` of `trials` (see `binomial_interval`)."""
  return binomial_interval(successes, trials, confidence_level, method="wilson")


def clopper_pearson_interval(successes: int, trials: int,
                             confidence_level: float = 0.95) -> Interval:
  """Clopper-Pearson (exact) interval for `successes` of `trials` (see `binomial_interval`)."""
  return binomial_interval(successes, trials, confidence_level, method="clopper-pearson")


def success_summary(successes: Any, confidence_level: float = 0.95,
                    method: str = "wilson") -> dict[str, int | float]:
  """Summary of per-episode outcomes for reports.

  Args:
    successes: bool or 0/1 array [n], one entry per episode (n >= 1).
    confidence_level: coverage of the interval.
    method: interval method, "wilson" (default) or "clopper-pearson".

  Returns:
    {"n": int, "successes": int, "rate": float, "ci_low": float, "ci_high": float}, plain Python
    types (JSON-serializable).
  """
  outcomes = np.asarray(successes)
  if outcomes.ndim != 1:
    raise ValueError(f"successes must be a 1-D array [n] of per-episode outcomes, got shape "
                     f"{outcomes.shape}")
  if outcomes.dtype != np.bool_:
    if not np.issubdtype(outcomes.dtype, np.number) or not np.all(
        (outcomes == 0) | (outcomes == 1)):
      raise ValueError("successes must hold only booleans or 0/1 values")
  n = int(outcomes.size)
  k = int(np.count_nonzero(outcomes))
  low, high = binomial_interval(k, n, confidence_level, method)
  return {"n": n, "successes": k, "rate": k / n, "ci_low": low, "ci_high": high}


# ------------------------------------------------------------------------------------------------
# Two success rates.


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
  """Outcome of an exact test of policy A's success counts against policy B's.

  Attributes:
    test: "fisher" or "barnard".
    alternative: "two-sided" (rate_a != rate_b), "greater" (rate_a > rate_b) or "less".
    p_value: the test's p-value under H0: equal success probabilities.
    rate_a: successes_a / trials_a.
    rate_b: successes_b / trials_b.
    statistic: Fisher's sample odds ratio (A's odds of success over B's) or Barnard's Wald
      statistic (positive when rate_a > rate_b).
    successes_a, trials_a, successes_b, trials_b: the counts tested.
  """
  test: str
  alternative: str
  p_value: float
  rate_a: float
  rate_b: float
  statistic: float
  successes_a: int
  trials_a: int
  successes_b: int
  trials_b: int

  def to_dict(self) -> dict[str, Any]:
    """The fields as a JSON-serializable dict."""
    return dataclasses.asdict(self)


def _table(successes_a, trials_a, successes_b, trials_b) -> np.ndarray:
  """2x2 table int[2, 2] with one column per policy: [[k_a, k_b], [n_a - k_a, n_b - k_b]]."""
  k_a, n_a = _counts(successes_a, trials_a, "successes_a", "trials_a")
  k_b, n_b = _counts(successes_b, trials_b, "successes_b", "trials_b")
  return np.array([[k_a, k_b], [n_a - k_a, n_b - k_b]], dtype=np.int64)


def _comparison(test: str, alternative: str, p_value: float, statistic: float,
                table: np.ndarray) -> ComparisonResult:
  (k_a, k_b), (f_a, f_b) = table.tolist()
  return ComparisonResult(test=test, alternative=alternative, p_value=float(p_value),
                          rate_a=k_a / (k_a + f_a), rate_b=k_b / (k_b + f_b),
                          statistic=float(statistic), successes_a=k_a, trials_a=k_a + f_a,
                          successes_b=k_b, trials_b=k_b + f_b)


def fisher_exact_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                      alternative: str = "two-sided") -> ComparisonResult:
  """Fisher's exact test of A's success rate against B's (`scipy.stats.fisher_exact`).

  Conditions on both margins of the 2x2 table (conservative for two independent binomial
  samples). `alternative`: "two-sided", "greater" (H1: A's rate > B's) or "less".
  """
  _choice(alternative, "alternative", _TEST_ALTERNATIVES)
  table = _table(successes_a, trials_a, successes_b, trials_b)
  result = stats.fisher_exact(table, alternative=alternative)
  return _comparison("fisher", alternative, result.pvalue, result.statistic, table)


def barnard_exact_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int,
                       alternative: str = "two-sided", pooled: bool = True) -> ComparisonResult:
  """Barnard's exact test of A's success rate against B's (`scipy.stats.barnard_exact`).

  Unconditional test for two independent binomial samples (fixed trials per policy, as in an
  evaluation), maximizing the p-value over the nuisance common rate; usually more powerful than
  Fisher's test (smaller p-values for the same table). `alternative`: "two-sided", "greater"
  (H1: A's rate > B's) or "less"; `pooled`: Wald statistic with pooled (default) or unpooled
  variance.
  """
  _choice(alternative, "alternative", _TEST_ALTERNATIVES)
  table = _table(successes_a, trials_a, successes_b, trials_b)
  result = stats.barnard_exact(table, alternative=alternative, pooled=pooled)
  return _comparison("barnard", alternative, result.pvalue, result.statistic, table)


def min_trials_per_arm(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8,
                       alternative: str = "two-sided", method: str = "pooled") -> int:
  """Trials per policy needed to detect success probability `p_a` vs `p_b` (normal approximation).

  With z_a = Phi^-1(1 - alpha/2) ("two-sided") or Phi^-1(1 - alpha) ("one-sided"),
  z_b = Phi^-1(power), q = 1 - p and p_bar = (p_a + p_b) / 2:

  - "pooled" (two-proportion z-test, Fleiss' formula without continuity correction):
      n = (z_a sqrt(2 p_bar (1 - p_bar)) + z_b sqrt(p_a q_a + p_b q_b))^2 / (p_a - p_b)^2
  - "arcsine" (Cohen's effect size h = 2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b)); the seed's recipe):
      n = (z_a + z_b)^2 / h^2

  Exact tests on the resulting counts (Fisher's in particular, which is conservative) have
  somewhat less power than requested; treat the result as a lower bound.

  Args:
    p_a, p_b: the two success probabilities to tell apart, in [0, 1], p_a != p_b.
    alpha: significance level, in (0, 1).
    power: probability of rejecting H0 when the rates are p_a and p_b, in (0, 1).
    alternative: "two-sided" or "one-sided".
    method: "pooled" or "arcsine".

  Returns:
    n, the smallest integer >= the formula's value.
  """
  p_a = _probability(p_a, "p_a", open_interval=False)
  p_b = _probability(p_b, "p_b", open_interval=False)
  if p_a == p_b:
    raise ValueError(f"p_a and p_b are both {p_a}: no number of trials detects a zero difference")
  alpha = _probability(alpha, "alpha")
  power = _probability(power, "power")
  _choice(alternative, "alternative", ("two-sided", "one-sided"))
  _choice(method, "method", ("pooled", "arcsine"))
  z_a = stats.norm.ppf(1.0 - alpha / 2.0 if alternative == "two-sided" else 1.0 - alpha)
  z_b = stats.norm.ppf(power)
  if method == "pooled":
    p_bar = 0.5 * (p_a + p_b)
    numerator = (z_a * np.sqrt(2.0 * p_bar * (1.0 - p_bar))
                 + z_b * np.sqrt(p_a * (1.0 - p_a) + p_b * (1.0 - p_b)))
    n = numerator**2 / (p_a - p_b)**2
  else:
    h = 2.0 * np.arcsin(np.sqrt(p_a)) - 2.0 * np.arcsin(np.sqrt(p_b))
    n = (z_a + z_b)**2 / h**2
  # Guard against float noise pushing an exact integer just above itself.
  return int(np.ceil(n - 1e-9))


# ------------------------------------------------------------------------------------------------
# Aggregates over runs x tasks (rliable). Each takes scores f[..., num_runs, num_tasks] and returns
# f[...], so the bootstrap can evaluate a batch of resamples at once.


def aggregate_iqm(scores: np.ndarray) -> np.ndarray:
  """Interquartile mean: mean of the middle 50% of all runs x tasks scores (25% cut each end)."""
  scores = np.asarray(scores, dtype=np.float64)
  flat = scores.reshape(*scores.shape[:-2], -1)
  return stats.trim_mean(flat, proportiontocut=0.25, axis=-1)


def aggregate_mean(scores: np.ndarray) -> np.ndarray:
  """Mean over tasks of the per-task mean score."""
  return np.mean(np.mean(scores, axis=-2), axis=-1)


def aggregate_median(scores: np.ndarray) -> np.ndarray:
  """Median over tasks of the per-task mean score (rliable's `aggregate_median`)."""
  return np.median(np.mean(scores, axis=-2), axis=-1)


def aggregate_optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> np.ndarray:
  """Mean shortfall below `threshold` (rliable's gamma): threshold - mean(min(scores, threshold)).

  Lower is better; scores above the threshold earn nothing extra.
  """
  scores = np.asarray(scores, dtype=np.float64)
  return threshold - np.mean(np.minimum(scores, threshold), axis=(-2, -1))


AGGREGATE_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": aggregate_iqm,
    "mean": aggregate_mean,
    "median": aggregate_median,
    "optimality_gap": aggregate_optimality_gap,
}


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A point estimate with its bootstrap confidence interval, as plain floats.

  Attributes:
    value: the statistic on the observed data.
    low, high: the interval's bounds.
    confidence_level: the interval's two-sided coverage.
  """
  value: float
  low: float
  high: float
  confidence_level: float

  def to_dict(self) -> dict[str, float]:
    """The fields as a JSON-serializable dict."""
    return dataclasses.asdict(self)


def _resolve_statistic(statistic: str | Callable[[np.ndarray], np.ndarray]) -> Callable:
  if callable(statistic):
    return statistic
  return AGGREGATE_METRICS[_choice(statistic, "statistic", list(AGGREGATE_METRICS))]


def _stratified_bootstrap(columns: list[np.ndarray], statistic: Callable[..., np.ndarray],
                          confidence_level: float, n_resamples: int, method: str,
                          rng: int | np.random.Generator) -> tuple[float, float]:
  """Percentile/basic interval of `statistic(*columns)` resampling each column independently.

  Each column f[num_runs] is one stratum (one task of one method): `scipy.stats.bootstrap` with
  several samples and `paired=False` resamples each sample with replacement on its own, which is
  rliable's stratified bootstrap. `statistic` gets the resampled columns, each f[batch, num_runs].
  """
  level = _probability(confidence_level, "confidence_level")
  _choice(method, "method", _BOOTSTRAP_METHODS)
  n_resamples = operator.index(n_resamples)
  if n_resamples < 1:
    raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
  total_size = sum(column.size for column in columns)
  result = stats.bootstrap(
      tuple(columns), lambda *samples, axis: statistic(*samples), n_resamples=n_resamples,
      batch=max(1, _BOOTSTRAP_BATCH_ELEMENTS // total_size), vectorized=True, paired=False,
      axis=-1, confidence_level=level, method=method, rng=np.random.default_rng(rng))
  return float(result.confidence_interval.low), float(result.confidence_interval.high)


def stratified_bootstrap_ci(scores: Any,
                            statistic: str | Callable[[np.ndarray], np.ndarray] = "iqm",
                            confidence_level: float = 0.95, n_resamples: int = 50_000,
                            method: str = "percentile",
                            rng: int | np.random.Generator = 0) -> Estimate:
  """An aggregate metric of a scores matrix with rliable's stratified-bootstrap interval.

  Each replicate resamples the `num_runs` scores of every task with replacement, independently
  per task (tasks are strata: a replicate never moves a score to another task), then computes
  the metric on the resampled matrix. Implemented with `scipy.stats.bootstrap`, one sample per
  task column.

  Args:
    scores: f[num_runs, num_tasks], num_runs >= 2 (runs are e.g. training seeds).
    statistic: a name in `AGGREGATE_METRICS` ("iqm", "mean", "median", "optimality_gap") or a
      function f[..., num_runs, num_tasks] -> f[...].
    confidence_level: two-sided coverage of the interval.
    n_resamples: bootstrap replicates (rliable's default 50,000).
    method: "percentile" (rliable's default) or "basic". (BCa is not offered: its jackknife
      drops one run from a single task, which a runs x tasks matrix cannot hold.)
    rng: seed or generator for the resampling.

  Returns:
    Estimate(value=metric on `scores`, low, high, confidence_level).
  """
  x = _scores_matrix(scores, "scores", min_runs=2)
  fn = _resolve_statistic(statistic)
  low, high = _stratified_bootstrap([x[:, j] for j in range(x.shape[1])],
                                    lambda *columns: fn(np.stack(columns, axis=-1)),
                                    confidence_level, n_resamples, method, rng)
  return Estimate(float(fn(x)), low, high, float(confidence_level))


def aggregate_metrics(scores: Any, metrics: Sequence[str] = tuple(AGGREGATE_METRICS),
                      confidence_level: float = 0.95, n_resamples: int = 50_000,
                      method: str = "percentile",
                      rng: int | np.random.Generator = 0) -> dict[str, Estimate]:
  """`stratified_bootstrap_ci` for each named metric, on one shared stream of random numbers.

  Args:
    scores: f[num_runs, num_tasks], num_runs >= 2.
    metrics: names in `AGGREGATE_METRICS`.
    confidence_level, n_resamples, method: as in `stratified_bootstrap_ci`.
    rng: seed or generator; each metric draws its own replicates from it in order.

  Returns:
    {metric name: Estimate}.
  """
  generator = np.random.default_rng(rng)
  return {name: stratified_bootstrap_ci(scores, name, confidence_level, n_resamples, method,
                                        generator)
          for name in metrics}


def _improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """P(X > Y) + P(X = Y) / 2 per row: Mann-Whitney U of x f[..., n] vs y f[..., m] over n m."""
  u = stats.mannwhitneyu(x, y, axis=-1, method="asymptotic").statistic
  return u / (x.shape[-1] * y.shape[-1])


def _check_pair(scores_x: Any, scores_y: Any, min_runs: int) -> tuple[np.ndarray, np.ndarray]:
  x = _scores_matrix(scores_x, "scores_x", min_runs=min_runs)
  y = _scores_matrix(scores_y, "scores_y", min_runs=min_runs)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"scores_x and scores_y must cover the same tasks: scores_x has "
                     f"{x.shape[1]} tasks (shape {x.shape}), scores_y {y.shape[1]} "
                     f"(shape {y.shape})")
  return x, y


def probability_of_improvement(scores_x: Any, scores_y: Any) -> float:
  """rliable's probability of improvement P(X > Y), averaged over tasks.

  Per task, the probability that a random run of X scores above a random run of Y, ties counting
  1/2: the Mann-Whitney U statistic of X's runs against Y's over (num_runs_x * num_runs_y)
  (`scipy.stats.mannwhitneyu`). 1 when X beats Y on every pair, 0.5 for identical samples.

  Args:
    scores_x: f[num_runs_x, num_tasks].
    scores_y: f[num_runs_y, num_tasks] (same tasks in the same order; run counts may differ).

  Returns:
    The mean over tasks, in [0, 1].
  """
  x, y = _check_pair(scores_x, scores_y, min_runs=1)
  return float(np.mean(_improvement_probability(x.T, y.T)))


def probability_of_improvement_ci(scores_x: Any, scores_y: Any, confidence_level: float = 0.95,
                                  n_resamples: int = 50_000, method: str = "percentile",
                                  rng: int | np.random.Generator = 0) -> Estimate:
  """`probability_of_improvement` with a stratified-bootstrap interval.

  Each replicate resamples runs with replacement within every (method, task) cell independently
  (rliable's `StratifiedIndependentBootstrap`); see `stratified_bootstrap_ci` for the arguments.
  Both matrices need >= 2 runs.
  """
  x, y = _check_pair(scores_x, scores_y, min_runs=2)
  num_tasks = x.shape[1]

  def statistic(*columns):
    per_task = [_improvement_probability(columns[j], columns[num_tasks + j])
                for j in range(num_tasks)]
    return np.mean(per_task, axis=0)

  columns = [x[:, j] for j in range(num_tasks)] + [y[:, j] for j in range(num_tasks)]
  low, high = _stratified_bootstrap(columns, statistic, confidence_level, n_resamples, method,
                                    rng)
  return Estimate(probability_of_improvement(x, y), low, high, float(confidence_level))
