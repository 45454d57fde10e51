"""Lab 3, DPO and IPO against online RL (GRPO, RLOO), three seeds each.

One yardstick for every objective: DPO's implicit reward against the base on held-out pairs
(`kubetune_trainer.score`, metric `preference`), at every checkpoint and at the end. The training logs
add each objective's own signal (DPO's reward accuracy on its batches, RL's mean reward) and the
throughput. PPO is absent because TRL removed PPOTrainer; the report says so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.scoring import ScoredModel, ScoreSuite
from kubetune.labs.definition import Lab, Setting, name_of, of_kind
from kubetune.labs.measures import mean_std, metric, quarter_means, recorded, series
from kubetune.labs.report import Check, Figure, Report, Section, Series, Table, lab_report

if TYPE_CHECKING:
    from kubetune.labs.runner import LabRun

SUITE = "prefs"
BASE = "base"
OBJECTIVES = {"dpo": "DPO", "ipo": "IPO", "grpo": "GRPO", "rloo": "RLOO"}
OFFLINE, ONLINE = ("dpo", "ipo"), ("grpo", "rloo")
NO_PPO = (
    "PPO is not compared: TRL no longer ships PPOTrainer (removed from TRL; its online RL trainers are GRPO and "
    "RLOO), so kubetune's `rlhf` objective offers `grpo` and `rloo` only."
)
CHANCE = 0.5
_SEED = re.compile(r"^(?P<objective>.+)-seed(?P<seed>\d+)$")


def objective_of(name: str) -> str:
    match = _SEED.match(name)
    return match["objective"] if match else name


def run(context: LabRun) -> dict[str, Any]:
    local = context.scorer()
    jobs = of_kind(context.documents, "FineTuneJob")
    records = context.backend.train(jobs)
    models = [ScoredModel(name=BASE)]
    for name, record in records.items():
        models += [ScoredModel(name=f"{name}@{c.name.rsplit('-', 1)[1]}", artifact=str(c)) for c in record.checkpoints]
        models.append(ScoredModel(name=name, artifact=str(record.artifact)))
    suite = ScoreSuite(name=SUITE, metric="preference", data=local.data("prefs-eval.jsonl"))
    scores = local.score(local.score_request(context.model_uri, models, [suite]), "preferences")
    return {
        "jobs": [name_of(d) for d in jobs],
        "scores": scores.scores,
        **recorded(records),
    }


def curve(scores: dict[str, dict[str, float]], run: str, key: str) -> tuple[list[float], list[float]]:
    """Held-out `key` at step 0 (the base) and at every scored checkpoint of `run`."""
    steps = sorted(int(n.rsplit("@", 1)[1]) for n in scores if n.startswith(f"{run}@"))
    return [0.0, *map(float, steps)], [
        scores[BASE][f"{SUITE}.{key}"],
        *[scores[f"{run}@{s}"][f"{SUITE}.{key}"] for s in steps],
    ]


def seed_curve(scores: dict[str, dict[str, float]], runs: list[str], key: str, label: str) -> Series:
    curves = [curve(scores, r, key) for r in runs]
    steps = curves[0][0]
    stats = [mean_std([c[1][i] for c in curves]) for i in range(len(steps))]
    return Series(label, steps, [m for m, _ in stats], spread=[s for _, s in stats])


def analyse(raw: dict[str, Any], lab: Lab, setting: Setting) -> Report:
    scores, runs = raw["scores"], raw["runs"]
    groups = {o: [n for n in raw["jobs"] if objective_of(n) == o] for o in OBJECTIVES}
    groups = {o: names for o, names in groups.items() if names}

    def final(objective: str, key: str) -> tuple[float, float]:
        return mean_std([scores[n][f"{SUITE}.{key}"] for n in groups[objective]])

    def measured(objective: str, key: str) -> tuple[float, float]:
        return mean_std([metric(runs[n], key) for n in groups[objective]])

    rows = []
    for o, names in groups.items():
        acc, margin = final(o, "accuracy"), final(o, "margin")
        seconds, step = measured(o, "train.seconds"), measured(o, "train.step_seconds")
        rows.append(
            [
                OBJECTIVES[o],
                len(names),
                f"{acc[0]:.3f} ± {acc[1]:.3f}",
                f"{margin[0]:.3f} ± {margin[1]:.3f}",
                f"{seconds[0]:.1f} ± {seconds[1]:.1f}",
                step[0],
            ]
        )
    table = Table(
        "Held-out preferences after training (mean ± standard deviation over seeds)",
        ["objective", "seeds", "reward accuracy", "reward margin (nats)", "training time (s)", "median step (s)"],
        rows,
        note=f"Base model: accuracy {scores[BASE][f'{SUITE}.accuracy']:.2f}, margin 0 by definition. Reward accuracy: "
        "share of held-out pairs where the implicit reward (log-ratio to the base) of the chosen answer beats the "
        "rejected one's; margin: its mean difference.",
    )
    figures = [
        Figure(
            f"reward-{key}.png",
            f"Held-out reward {key} over steps (mean over seeds, band: ± one standard deviation)",
            "lines",
            "step",
            f"reward {key}",
            [seed_curve(scores, names, key, OBJECTIVES[o]) for o, names in groups.items()],
        )
        for key in ("accuracy", "margin")
    ]
    own = [
        Series(f"{OBJECTIVES[o]} {r.rsplit('-', 1)[1]}", *series(runs[r], key))
        for o, key in (("grpo", "reward"), ("rloo", "reward"))
        if o in groups
        for r in groups[o]
    ]
    figures.append(
        Figure(
            "rl-reward.png",
            "Online RL: mean reference-match reward of the sampled completions",
            "lines",
            "step",
            "mean reward",
            own,
        )
    )
    checks = [
        Check(
            f"{OBJECTIVES[o]} raises held-out reward accuracy above chance on average over seeds",
            final(o, "accuracy")[0] > CHANCE,
            f"{final(o, 'accuracy')[0]:.3f} ± {final(o, 'accuracy')[1]:.3f}",
        )
        for o in groups
    ]
    for o in (o for o in ONLINE if o in groups):
        firsts, lasts = zip(*[quarter_means(series(runs[r], "reward")[1]) for r in groups[o]], strict=True)
        checks.append(
            Check(
                f"{OBJECTIVES[o]}'s sampled reward is higher in the last quarter of training than in the first",
                mean_std(lasts)[0] > mean_std(firsts)[0],
                f"{mean_std(firsts)[0]:.3f} → {mean_std(lasts)[0]:.3f}",
            )
        )
    offline = max(final(o, "margin")[0] for o in OFFLINE if o in groups)
    online = max(final(o, "margin")[0] for o in ONLINE if o in groups)
    reading = (
        f"Best held-out margin offline {offline:.3f} nats, online {online:.3f}. Offline objectives push the "
        "pair's log-ratio directly; online RL only moves it as far as its sampled completions find the reward."
    )
    return lab_report(
        lab,
        setting,
        [Section("Held-out preferences", reading, [table], figures)],
        checks,
        libraries=raw["environment"],
        notes=(NO_PPO,),
    )
