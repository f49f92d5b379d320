"""The runs of a benchmark plan: one per (scenario, level, normal class, seed, method, nu), listed so
that runs sharing a training set (and its pretraining) are adjacent, and grouped for stacking."""

from __future__ import annotations

from dataclasses import dataclass

from ssd_cli.experiments.protocol import Method, Scenario, methods_for_level

MAX_STACK = 32  # runs trained at once; bounds the memory of the stacked data


@dataclass(frozen=True)
class Run:
    scenario: Scenario
    level: float
    normal_class: int
    seed: int
    method: Method
    nu: float | None  # soft-boundary methods only

    def key(self) -> tuple:
        return (self.scenario.value, float(self.level), self.normal_class, self.seed, self.method.value, self.nu)

    def pretraining(self) -> tuple:
        """Runs with the same value share one pretraining: in scenario (i) the labeled level leaves
        the unlabeled samples alone, so every level of a class and seed shares it."""
        return (self.scenario, self.level if self.scenario is not Scenario.LABELED else 0, self.normal_class, self.seed)


def plan_runs(
    scenarios: list[Scenario],
    classes: list[int],
    seeds: int,
    methods: list[Method],
    nus: tuple[float, ...],
    levels: list[float] | None = None,
) -> list[Run]:
    """Every run, grouped so that runs sharing a training set (and its pretraining) are adjacent."""
    runs = []
    for scenario in scenarios:
        for level in levels if levels is not None else scenario.levels:
            wanted = [m for m in methods_for_level(scenario, level) if m in methods]
            for normal_class in classes:
                for seed in range(seeds):
                    for m in wanted:
                        for nu in nus if m.is_soft_boundary else (None,):
                            runs.append(Run(scenario, level, normal_class, seed, m, nu))
    return runs


def group_runs(runs: list[Run], stack: bool) -> list[list[Run]]:
    """Runs trained together: with stacking, all seeds and methods of one setup that share N."""
    if not stack:
        return [[r] for r in runs]
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        kind = "supervised" if r.method is Method.SUPERVISED else ("ss" if r.method.uses_labels else "unsupervised")
        groups.setdefault((r.scenario, r.level, r.normal_class, kind), []).append(r)
    return [g[i : i + MAX_STACK] for g in groups.values() for i in range(0, len(g), MAX_STACK)]
