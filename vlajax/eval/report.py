"""Reports of closed-loop evaluations: JSON, markdown, TensorBoard scalars, a comparison verdict.

`build(episodes, ...)` groups the per-episode outcomes (`vlajax.envs.rollout.Episodes`):

  overall     n, successes, rate and its Wilson 95% interval (`stats.success_summary`), mean return,
              length and time to success
  per_task    the same per task: the env itself, or for a language env each (family, object, goal)
              of `instructions.INSTRUCTIONS`, named "family/object/goal"
  per_split   language envs: per finest split of the instruction (`instructions.split_of`: train,
              heldout_tasks, heldout_phrasings, heldout_both)
  generalization  language envs: {"family": {family: {split: summary}}, "object": {...}}, the
              seen vs held-out matrix

`markdown(report)` renders the tables; `write(report, out_dir)` writes `report.json`, `report.md`
and TensorBoard scalars (`eval/success_rate`, `eval/<task>/success_rate`, ...). `compare(a, b)` tests
two reports' overall counts (Fisher's exact, one-sided A > B) and says in words what can be claimed.
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from vlajax.core import atomic
from vlajax.envs.rollout import Episodes
from vlajax.eval import stats


def _group(episodes: Episodes, mask: np.ndarray, has_success: bool = True) -> dict:
  summary = {"n": int(mask.sum())}
  if has_success:
    success = np.asarray(episodes.success)[mask]
    summary = stats.success_summary(success)
    reached = np.asarray(episodes.time_to_success)[mask][success]
    summary["mean_time_to_success"] = float(np.mean(reached)) if reached.size else None
  summary.update(mean_return=float(np.mean(np.asarray(episodes.episode_return)[mask])),
                 mean_length=float(np.mean(np.asarray(episodes.length)[mask])))
  summary.update({f"mean_{k}": float(np.mean(np.asarray(v)[mask]))
                  for k, v in episodes.metrics.items() if not has_success and "/" in k})
  return summary


def _groups(episodes: Episodes, labels: np.ndarray) -> dict:
  return {str(label): _group(episodes, labels == label) for label in sorted(set(labels.tolist()))}


def build(episodes: Episodes, *, env_name: str, policy: dict | None = None,
          seed: int | None = None, has_success: bool = True) -> dict:
  """The report dict of `episodes` (numpy or jax leaves, leading axis = episodes). For an env
  without a success signal (`has_success=False`) the groups hold n, mean return / length and the
  per-episode means of the env's metrics (e.g. `mean_tracking/lin_vel_error`), no rates."""
  n = int(np.asarray(episodes.success).shape[0])
  if n < 1:
    raise ValueError("no episodes to report")
  report: dict[str, Any] = {"env": env_name, "policy": policy or {}, "seed": seed,
                            "overall": _group(episodes, np.ones(n, bool), has_success)}
  instruction = np.asarray(episodes.instruction)
  if not has_success:
    return report
  if np.all(instruction < 0):
    report["per_task"] = {env_name: report["overall"]}
    return report
  from vlajax.envs.manipulation import instructions as ins  # pylint: disable=import-outside-toplevel
  table = [ins.INSTRUCTIONS[i] for i in instruction]
  tasks = np.array([f"{e.family}/{e.object}/{e.goal}".rstrip("/") for e in table])
  splits = np.array([ins.split_of(i) for i in instruction])
  families = np.array([e.family for e in table])
  objects = np.array([e.object for e in table])
  report["per_task"] = _groups(episodes, tasks)
  report["per_split"] = _groups(episodes, splits)
  report["generalization"] = {
      axis: {value: {split: _group(episodes, (labels == value) & (splits == split))
                     for split in sorted(set(splits[labels == value].tolist()))}
             for value in sorted(set(labels.tolist()))}
      for axis, labels in (("family", families), ("object", objects))}
  return report


def _cell(s: dict) -> str:
  return f"{s['successes']}/{s['n']} = {s['rate']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def markdown(report: dict) -> str:
  """Markdown tables: per task (and per split, and the generalization matrix for language envs)."""
  policy = report.get("policy") or {}
  if "successes" not in report["overall"]:   # no success signal: means only
    rows = [f"| {k} | {v:.4g} |" for k, v in report["overall"].items()]
    return "\n".join([f"## {report['env']}: {policy.get('kind', 'policy')} "
                      f"{policy.get('path') or ''}".rstrip(), "", f"Seed {report.get('seed')}; "
                      "the env has no success metric.", "", "| quantity | value |", "|---|---|",
                      *rows]) + "\n"
  lines = [f"## {report['env']}: {policy.get('kind', 'policy')} {policy.get('path') or ''}".rstrip(),
           "", f"Seed {report.get('seed')}; success rate with its Wilson 95% interval.", "",
           "| task | n | successes | rate | 95% interval | mean return |", "|---|---|---|---|---|---|"]
  rows = list(report["per_task"].items())
  if len(rows) > 1 or rows[0][0] != report["env"]:
    rows.append(("**overall**", report["overall"]))
  for name, s in rows:
    lines.append(f"| {name} | {s['n']} | {s['successes']} | {s['rate']:.3f} | "
                 f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}] | {s['mean_return']:.2f} |")
  if "per_split" in report:
    lines += ["", "| split | n | successes | rate | 95% interval |", "|---|---|---|---|---|"]
    for name, s in report["per_split"].items():
      lines.append(f"| {name} | {s['n']} | {s['successes']} | {s['rate']:.3f} | "
                   f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}] |")
    for axis, matrix in report["generalization"].items():
      splits = sorted({split for row in matrix.values() for split in row})
      lines += ["", f"| {axis} | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
      for value, row in matrix.items():
        lines.append(f"| {value} | " + " | ".join(_cell(row[s]) if s in row else "-"
                                                  for s in splits) + " |")
  return "\n".join(lines) + "\n"


def scalars(report: dict) -> dict[str, float]:
  """TensorBoard / JSONL scalars: overall and per task (and per split) success rates."""
  if "successes" not in report["overall"]:
    return {f"eval/{k[5:] if k.startswith('mean_') else k}": v
            for k, v in report["overall"].items() if k != "n"}
  out = {"eval/success_rate": report["overall"]["rate"],
         "eval/episode_return": report["overall"]["mean_return"]}
  for group in ("per_task", "per_split"):
    for name, s in report.get(group, {}).items():
      out[f"eval/{name}/success_rate"] = s["rate"]
  return out


def write(report: dict, out_dir: str | pathlib.Path, step: int = 0) -> pathlib.Path:
  """Writes `report.json`, `report.md` and the scalars (`metrics.jsonl`, TensorBoard) to `out_dir`."""
  from vlajax.core import metrics  # pylint: disable=import-outside-toplevel
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  atomic.write_json(out / "report.json", report, indent=1)
  atomic.write_text(out / "report.md", markdown(report))
  writer = metrics.MetricWriter(out, enabled=True, stream=None)
  writer.write(step, scalars(report))
  writer.close()
  return out


def compare(report_a: dict, report_b: dict, alpha: float = 0.05, power: float = 0.8) -> dict:
  """A vs B on their overall counts: both rates with intervals, Fisher's exact one-sided p-value
  for A > B, and a plain verdict (with the trials per policy a difference of the observed size
  would need at `alpha` and `power`)."""
  a, b = report_a["overall"], report_b["overall"]
  test = stats.fisher_exact_test(a["successes"], a["n"], b["successes"], b["n"],
                                 alternative="greater")
  result = {"a": a, "b": b, "test": "fisher_exact", "alternative": "A > B",
            "p_value": test.p_value}
  if test.p_value < alpha:
    verdict = f"A > B at the {alpha:g} level (p = {test.p_value:.3g}, n = {a['n']} / {b['n']})"
  else:
    verdict = f"cannot claim A > B with {a['n']} / {b['n']} trials (p = {test.p_value:.3g})"
    if a["rate"] > b["rate"]:
      need = stats.min_trials_per_arm(a["rate"], b["rate"], alpha=alpha, power=power,
                                      alternative="one-sided")
      result["trials_needed_per_policy"] = need
      verdict += (f"; a difference of {a['rate']:.2f} vs {b['rate']:.2f} needs about {need} trials "
                  f"per policy for power {power:g}")
  result["verdict"] = verdict
  return result
