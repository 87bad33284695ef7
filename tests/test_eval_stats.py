"""Tests for vlajax.eval.stats: intervals, exact tests, trial counts and rliable aggregates."""
import json

import numpy as np
import pytest
from scipy import stats as sps

from vlajax.eval import stats


def _wilson_closed_form(k, n, confidence_level):
  """Wilson score interval from its formula (seed 001, section 24)."""
  z = sps.norm.ppf(0.5 + confidence_level / 2)
  p = k / n
  center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
  margin = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
  return center - margin, center + margin


# ------------------------------------------------------------------------------------------------
# Intervals.


@pytest.mark.parametrize("k,n,expected", [
    (45, 50, (0.786, 0.957)),
    (462, 500, (0.897, 0.944)),
    (12, 24, (0.314, 0.686)),
    (24, 24, (0.862, 1.0)),
])
def test_wilson_reference_values(k, n, expected):
  low, high = stats.wilson_interval(k, n)
  assert (round(low, 3), round(high, 3)) == expected


@pytest.mark.parametrize("k,n", [(0, 1), (0, 10), (3, 7), (35, 50), (50, 50), (1, 1000)])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_wilson_matches_closed_form(k, n, level):
  np.testing.assert_allclose(stats.wilson_interval(k, n, level), _wilson_closed_form(k, n, level),
                             rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (17, 20), (42, 50), (50, 50), (462, 500)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_clopper_pearson_matches_beta_quantiles(k, n, level):
  alpha = 1 - level
  low = 0.0 if k == 0 else sps.beta.ppf(alpha / 2, k, n - k + 1)
  high = 1.0 if k == n else sps.beta.ppf(1 - alpha / 2, k + 1, n - k)
  np.testing.assert_allclose(stats.clopper_pearson_interval(k, n, level), (low, high), atol=1e-9)
  if 0 < k < n:  # away from the boundaries the exact interval is the more conservative one
    wilson = stats.wilson_interval(k, n, level)
    assert high - low > wilson.high - wilson.low


def test_interval_narrows_with_trials():
  widths = [np.diff(stats.wilson_interval(int(0.8 * n), n))[0] for n in (10, 50, 100, 500)]
  assert np.all(np.diff(widths) < 0)


def test_success_summary_is_plain_json():
  outcomes = np.array([1] * 45 + [0] * 5, dtype=np.int32)
  summary = stats.success_summary(outcomes)
  assert set(summary) == {"n", "successes", "rate", "ci_low", "ci_high"}
  assert summary["n"] == 50 and summary["successes"] == 45 and summary["rate"] == 0.9
  assert (round(summary["ci_low"], 3), round(summary["ci_high"], 3)) == (0.786, 0.957)
  assert type(summary["n"]) is int and type(summary["successes"]) is int
  assert all(type(summary[key]) is float for key in ("rate", "ci_low", "ci_high"))
  assert json.loads(json.dumps(summary)) == summary
  # Booleans and lists work too; Clopper-Pearson on request.
  assert stats.success_summary(outcomes.astype(bool).tolist()) == summary
  exact = stats.success_summary(outcomes, method="clopper-pearson")
  assert exact["ci_low"] == stats.clopper_pearson_interval(45, 50).low


# ------------------------------------------------------------------------------------------------
# Exact tests.


@pytest.mark.parametrize("counts,p_value", [
    ((3, 4, 1, 4), 0.4857),  # lady tasting tea
    ((42, 50, 37, 50), 0.33),
    ((85, 100, 65, 100), 0.0017),
])
def test_fisher_reference_values(counts, p_value):
  result = stats.fisher_exact_test(*counts)
  assert result.test == "fisher" and result.alternative == "two-sided"
  assert result.p_value == pytest.approx(p_value, abs=0.5 * 10**-(len(str(p_value)) - 2))
  assert result.rate_a == counts[0] / counts[1] and result.rate_b == counts[2] / counts[3]


def test_fisher_one_sided_is_hypergeometric_tail():
  k_a, n_a, k_b, n_b = 85, 100, 65, 100
  # P(A's successes >= k_a | both margins): hypergeometric over n_a draws from n_a + n_b trials.
  tail = sps.hypergeom.sf(k_a - 1, n_a + n_b, k_a + k_b, n_a)
  greater = stats.fisher_exact_test(k_a, n_a, k_b, n_b, alternative="greater")
  less = stats.fisher_exact_test(k_a, n_a, k_b, n_b, alternative="less")
  assert greater.p_value == pytest.approx(tail, rel=1e-9)
  assert greater.alternative == "greater" and less.p_value > 0.99
  assert greater.statistic == pytest.approx((85 * 35) / (15 * 65))  # odds ratio 3.05
  assert json.loads(json.dumps(greater.to_dict()))["p_value"] == greater.p_value


def test_barnard_known_value_and_orientation():
  # scipy's documented example, one column per group: A = 7 of 15, B = 12 of 15.
  less = stats.barnard_exact_test(7, 15, 12, 15, alternative="less")
  assert less.p_value == pytest.approx(0.03407, abs=5e-5)
  assert less.statistic < 0  # A's rate is below B's
  greater = stats.barnard_exact_test(7, 15, 12, 15, alternative="greater")
  assert greater.p_value > 0.9 and greater.test == "barnard"


@pytest.mark.parametrize("counts", [(3, 4, 1, 4), (17, 20, 13, 20), (42, 50, 37, 50),
                                    (85, 100, 65, 100), (9, 10, 5, 10)])
def test_barnard_at_least_as_powerful_as_fisher(counts):
  assert stats.barnard_exact_test(*counts).p_value <= stats.fisher_exact_test(*counts).p_value


# ------------------------------------------------------------------------------------------------
# Trial counts.


def _pooled_trials(p1, p2, z_alpha, z_beta):
  p_bar = (p1 + p2) / 2
  root = z_alpha * np.sqrt(2 * p_bar * (1 - p_bar)) + z_beta * np.sqrt(
      p1 * (1 - p1) + p2 * (1 - p2))
  return int(np.ceil(root**2 / (p1 - p2)**2))


def test_min_trials_worked_examples():
  z_alpha, z_beta = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
  assert stats.min_trials_per_arm(0.5, 0.8) == _pooled_trials(0.5, 0.8, z_alpha, z_beta) == 39
  assert stats.min_trials_per_arm(0.8, 0.5) == 39  # symmetric
  assert stats.min_trials_per_arm(0.6, 0.8) == 82  # the textbook value (no continuity correction)
  one_sided = _pooled_trials(0.5, 0.8, sps.norm.ppf(0.95), z_beta)
  assert stats.min_trials_per_arm(0.5, 0.8, alternative="one-sided") == one_sided < 39
  # The seed's arcsine recipe (one-sided, Cohen's h): its code gives these counts.
  for p_a, p_b in ((0.85, 0.65), (0.85, 0.75)):
    h = 2 * np.arcsin(np.sqrt(p_a)) - 2 * np.arcsin(np.sqrt(p_b))
    expected = int(np.ceil((sps.norm.ppf(0.95) + z_beta)**2 / h**2))
    assert stats.min_trials_per_arm(p_a, p_b, alternative="one-sided",
                                    method="arcsine") == expected
  # Smaller differences and more power need more trials.
  assert stats.min_trials_per_arm(0.85, 0.75) > stats.min_trials_per_arm(0.85, 0.65)
  assert stats.min_trials_per_arm(0.5, 0.8, power=0.9) > 39


def test_min_trials_reaches_power_by_simulation():
  """At the returned n, the two-sided pooled z-test rejects about `power` of the time."""
  n = stats.min_trials_per_arm(0.5, 0.8)
  rng = np.random.default_rng(0)

  def power(trials):
    k_a, k_b = rng.binomial(trials, 0.5, 20_000), rng.binomial(trials, 0.8, 20_000)
    pooled = (k_a + k_b) / (2 * trials)
    z = (k_b - k_a) / trials / np.sqrt(2 * pooled * (1 - pooled) / trials)
    return np.mean(np.abs(z) > sps.norm.ppf(0.975))

  assert 0.77 < power(n) < 0.85
  assert power(n // 2) < 0.6


# ------------------------------------------------------------------------------------------------
# Aggregates.


def test_aggregates_on_hand_made_matrix():
  scores = np.array([[0.0, 50.0], [10.0, 1.0], [2.0, 0.0], [100.0, 3.0]])  # [4 runs, 2 tasks]
  # Sorted: 0 0 1 2 | 3 10 | ... -> 8 scores, 2 cut from each end: mean(1, 2, 3, 10) = 4.
  assert stats.aggregate_iqm(scores) == pytest.approx(4.0)
  assert stats.aggregate_iqm(scores) == pytest.approx(sps.trim_mean(scores.ravel(), 0.25))
  assert stats.aggregate_mean(scores) == pytest.approx(scores.mean())
  # Per-task means 28 and 13.5; median of two = their mean.
  assert stats.aggregate_median(scores) == pytest.approx(20.75)
  unit = np.array([[0.2, 1.5], [0.6, 1.0]])
  # threshold - mean(min(scores, 1)) = 1 - (0.2 + 1 + 0.6 + 1) / 4.
  assert stats.aggregate_optimality_gap(unit) == pytest.approx(0.3)
  # Batched: f[batch, runs, tasks] -> f[batch].
  batch = np.stack([scores, 2 * scores])
  np.testing.assert_allclose(stats.aggregate_iqm(batch), [4.0, 8.0])
  np.testing.assert_allclose(stats.aggregate_median(batch), [20.75, 41.5])


def _scores(rng, num_runs, num_tasks):
  return rng.normal(0.5, 0.2, size=(num_runs, num_tasks))


@pytest.mark.parametrize("metric", list(stats.AGGREGATE_METRICS))
def test_bootstrap_interval_contains_estimate_and_shrinks(metric):
  rng = np.random.default_rng(1)
  small = stats.stratified_bootstrap_ci(_scores(rng, 5, 4), metric, n_resamples=5000)
  large = stats.stratified_bootstrap_ci(_scores(rng, 80, 4), metric, n_resamples=5000)
  for estimate in (small, large):
    assert estimate.low <= estimate.value <= estimate.high
    assert estimate.confidence_level == 0.95
  assert large.high - large.low < 0.5 * (small.high - small.low)


def test_bootstrap_is_reproducible():
  scores = _scores(np.random.default_rng(2), 10, 3)
  first = stats.stratified_bootstrap_ci(scores, "iqm", n_resamples=2000, rng=7)
  assert stats.stratified_bootstrap_ci(scores, "iqm", n_resamples=2000, rng=7) == first
  assert stats.stratified_bootstrap_ci(scores, "iqm", n_resamples=2000,
                                       rng=np.random.default_rng(7)) == first
  assert stats.stratified_bootstrap_ci(scores, "iqm", n_resamples=2000, rng=8) != first
  together = stats.aggregate_metrics(scores, n_resamples=2000, rng=3)
  assert set(together) == set(stats.AGGREGATE_METRICS)
  assert stats.aggregate_metrics(scores, n_resamples=2000, rng=3) == together
  assert json.loads(json.dumps(together["iqm"].to_dict())) == together["iqm"].to_dict()


def test_bootstrap_never_mixes_tasks():
  rng = np.random.default_rng(3)
  scales = np.array([1.0, 1000.0, 1e6])
  scores = rng.random((6, 3)) * scales  # task columns on very different scales

  def fraction_in_own_column(resampled):
    """f[..., runs, tasks] -> share of scores found among their own task's original scores."""
    hits = [np.isin(resampled[..., j], scores[:, j]) for j in range(scores.shape[1])]
    return np.mean(np.stack(hits, axis=-1), axis=(-2, -1))

  check = stats.stratified_bootstrap_ci(scores, fraction_in_own_column, n_resamples=2000)
  assert (check.value, check.low, check.high) == (1.0, 1.0, 1.0)
  # Means stay within what per-task resampling can reach (pooling runs across tasks would not).
  mean = stats.stratified_bootstrap_ci(scores, "mean", n_resamples=2000)
  assert scores.min(axis=0).mean() <= mean.low <= mean.high <= scores.max(axis=0).mean()


def test_bootstrap_matches_hand_written_stratified_resampling():
  scores = _scores(np.random.default_rng(4), 8, 3)
  rng = np.random.default_rng(5)
  reps = 20_000
  index = rng.integers(0, 8, size=(reps, 8, 3))  # per replicate, per task: runs drawn
  resampled = np.take_along_axis(np.broadcast_to(scores, (reps, 8, 3)), index, axis=1)
  expected = np.percentile(resampled.mean(axis=(1, 2)), [2.5, 97.5])
  estimate = stats.stratified_bootstrap_ci(scores, "mean", n_resamples=reps)
  np.testing.assert_allclose((estimate.low, estimate.high), expected, atol=0.01)


def test_bootstrap_covers_true_mean_at_nominal_rate():
  rng = np.random.default_rng(6)
  task_means = np.array([0.2, 0.5, 0.8])
  covered = []
  for _ in range(400):
    scores = task_means + rng.normal(0, 0.1, size=(20, 3))
    estimate = stats.stratified_bootstrap_ci(scores, "mean", n_resamples=1000, rng=rng)
    covered.append(estimate.low <= task_means.mean() <= estimate.high)
  assert 0.88 <= np.mean(covered) <= 0.99


def test_probability_of_improvement():
  rng = np.random.default_rng(7)
  x = rng.random((10, 4))
  assert stats.probability_of_improvement(x + 2, x) == 1.0
  assert stats.probability_of_improvement(x, x + 2) == 0.0
  assert stats.probability_of_improvement(x, x) == 0.5
  ties = np.ones((3, 2))
  assert stats.probability_of_improvement(ties, ties) == 0.5
  # rliable's per-task loop with the Mann-Whitney U statistic; run counts may differ.
  y = rng.random((7, 4)) + 0.1
  loop = np.mean([sps.mannwhitneyu(x[:, j], y[:, j]).statistic / (10 * 7) for j in range(4)])
  assert stats.probability_of_improvement(x, y) == pytest.approx(loop)
  # Pairwise definition, ties counting 1/2.
  a, b = np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [0.0]])
  assert stats.probability_of_improvement(a, b) == pytest.approx((1 + 0.5 + 1 + 1 + 1) / 6)


def test_probability_of_improvement_interval():
  rng = np.random.default_rng(8)
  x, y = rng.random((10, 3)), rng.random((12, 3)) + 0.2
  estimate = stats.probability_of_improvement_ci(y, x, n_resamples=2000)
  assert estimate.low <= estimate.value <= estimate.high
  assert 0.5 < estimate.value and estimate.high <= 1.0
  assert stats.probability_of_improvement_ci(y, x, n_resamples=2000) == estimate
  dominating = stats.probability_of_improvement_ci(x + 2, x, n_resamples=500)
  assert (dominating.value, dominating.low, dominating.high) == (1.0, 1.0, 1.0)


# ------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("call,match", [
    (lambda: stats.wilson_interval(0, 0), "trials is 0"),
    (lambda: stats.clopper_pearson_interval(0, 0), "trials is 0"),
    (lambda: stats.wilson_interval(6, 5), r"successes \(6\) exceeds trials \(5\)"),
    (lambda: stats.wilson_interval(-1, 5), "successes must be >= 0"),
    (lambda: stats.wilson_interval(1, -5), "trials must be >= 0"),
    (lambda: stats.wilson_interval(1, 5, confidence_level=95), "confidence_level"),
    (lambda: stats.binomial_interval(1, 5, method="wald"), "method"),
    (lambda: stats.fisher_exact_test(5, 4, 1, 4), "successes_a"),
    (lambda: stats.barnard_exact_test(1, 4, 1, 0), "trials_b is 0"),
    (lambda: stats.fisher_exact_test(1, 4, 1, 4, alternative="bigger"), "alternative"),
    (lambda: stats.min_trials_per_arm(0.5, 0.5), "p_a and p_b"),
    (lambda: stats.min_trials_per_arm(0.5, 1.2), "p_b"),
    (lambda: stats.min_trials_per_arm(0.5, 0.8, power=1.0), "power"),
    (lambda: stats.min_trials_per_arm(0.5, 0.8, alternative="greater"), "alternative"),
    (lambda: stats.success_summary([]), "trials is 0"),
    (lambda: stats.success_summary(np.ones((2, 3))), r"1-D array \[n\].*\(2, 3\)"),
    (lambda: stats.success_summary([0, 1, 2]), "0/1"),
    (lambda: stats.stratified_bootstrap_ci(np.ones(5)), r"\[num_runs, num_tasks\].*\(5,\)"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((2, 3, 4))), r"\(2, 3, 4\)"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((1, 3))), "at least 2 runs"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((4, 0))), "no tasks"),
    (lambda: stats.stratified_bootstrap_ci([[1.0, np.nan], [1.0, 2.0]]), "non-finite"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((4, 2)), "best"), "statistic"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((4, 2)), method="BCa"), "method"),
    (lambda: stats.stratified_bootstrap_ci(np.ones((4, 2)), n_resamples=0), "n_resamples"),
    (lambda: stats.probability_of_improvement(np.ones((4, 2)), np.ones((4, 3))), "same tasks"),
    (lambda: stats.probability_of_improvement_ci(np.ones((4, 2)), np.ones((1, 2))), "scores_y"),
])
def test_bad_input_names_the_problem(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_non_integer_counts_are_type_errors():
  with pytest.raises(TypeError, match="successes must be an integer"):
    stats.wilson_interval(42.5, 50)
  with pytest.raises(TypeError, match="trials_a must be an integer"):
    stats.fisher_exact_test(1, 4.0, 1, 4)
