"""`method=spa` (alias `selfie`): SPA / Selfie, "Aligning Large Language Models with Self-generated
Preference Data" (Kim et al., arXiv 2406.04412; ICLR 2025).

    π_0 = DPO(π_SFT, seed pairs)                  the pairs `method=dpo method.labels=seed` trains on
    for i = 1..n:
        K samples per prompt of pool i from π_{i-1}               stage iter{i}_samples
        self-label: implicit reward of π_{i-1} (vs. reference)     stage iter{i}_labels
        π_i = self-refined DPO(init = ref = π_{i-1}, λ_i, α)       stage iter{i}_train
        evaluate π_i                                               stage iter{i}_eval
π_0 is evaluated as iteration 0 (stage iter0_eval). The last iteration's evaluation is the run's own
`eval` stage (same generator name as the pipeline's final evaluation), so it is not done twice.

An iteration whose samples all tie (no pair) trains nothing: the policy carries over, the row says
`trained: false` and n_pairs 0, and the run goes on (a warning is logged). An empty *seed* set is an
error (as for `method=dpo`): there is no π_0 to start from.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from methods.core.run import MethodResult
from methods.spa.labels import EXTERNAL, IMPLICIT, REFERENCES

log = logging.getLogger("selfalign")

ROW_METRICS = ("win_rate", "standard_error", "lc_win_rate", "lc_mode", "judge_score", "avg_length",
               "judge_version", "annotations_file")


@dataclass
class SPA:
    name: str = "spa"
    n_iterations: int | None = None  # null = one per pool in data.n_unlabelled
    n_samples: int = 2  # K responses per prompt; best vs. worst form the pair
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 300
    judge_reference: str = "sft"  # sft | previous | none | judge | labeller (see methods.spa.labels)
    reward_beta: float | None = None  # β of the implicit reward; null = trainer.args.beta (ordering only)
    lambdas: list = field(default_factory=lambda: [0.5, 0.25, 0.125])  # DND λ per iteration; last repeats
    alpha: float = 0.1  # label smoothing of pairs flagged noisy; 0 = no self-refinement
    window: int = 50
    percentile: float = 10.0
    threshold_convention: str = "current"  # current | released (methods.spa.loss.THRESHOLD_CONVENTIONS)
    warmup_fraction: float = 0.2
    seed_epochs: float | None = None  # null = trainer.args.num_train_epochs
    iteration_epochs: float | None = None
    eval_iterations: bool = True  # evaluate π_0 .. π_{n-1} too (π_n is always evaluated)
    score_batch_size: int = 16

    # ---- checks -------------------------------------------------------------------------------
    def validate(self, run) -> None:
        from methods.core.generation import SamplingParams

        if self.judge_reference not in REFERENCES:
            raise ValueError(f"method.judge_reference={self.judge_reference!r}: choose one of {list(REFERENCES)}")
        if not isinstance(self.n_samples, int) or self.n_samples < 2:
            raise ValueError(f"method.n_samples={self.n_samples!r}: need K ≥ 2 samples per prompt to form a pair")
        SamplingParams(n=self.n_samples, temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        lams = self._lambdas()
        if not lams or any(x < 0 for x in lams):
            raise ValueError(f"method.lambdas={lams}: need at least one λ ≥ 0")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"method.alpha={self.alpha}: must be in [0, 1]")
        if not isinstance(self.window, int) or self.window < 1 or not 0 <= self.percentile <= 100:
            raise ValueError(f"method.window={self.window}, method.percentile={self.percentile}: need window ≥ 1, "
                             "0 ≤ percentile ≤ 100")
        from methods.spa.loss import check_threshold_settings

        check_threshold_settings(self.threshold_convention, self.window, self.percentile)
        if not 0 <= self.warmup_fraction <= 1:
            raise ValueError(f"method.warmup_fraction={self.warmup_fraction}: must be in [0, 1]")
        for key in ("seed_epochs", "iteration_epochs"):
            v = getattr(self, key)
            if v is not None and not v > 0:
                raise ValueError(f"method.{key}={v}: must be > 0 (or null for trainer.args.num_train_epochs)")
        n_pools = self._n_pools(run)
        if self.n_iterations is not None and not 1 <= self.n_iterations <= n_pools:
            raise ValueError(f"method.n_iterations={self.n_iterations}: data.n_unlabelled gives {n_pools} pool(s)")
        if n_pools < 1:
            raise ValueError("method=spa needs at least one unlabelled pool (data.n_unlabelled)")
        if self.judge_reference == "labeller" and run.labeller is None:
            raise ValueError("method.judge_reference=labeller: this data set has no gold labeller (data.labeller)")
        if self.judge_reference == "judge" and not hasattr(run.judge, "score") and self.n_samples != 2:
            raise ValueError(f"method.judge_reference=judge: judge {run.judge.name!r} only compares pairs, so "
                             f"method.n_samples must be 2 (got {self.n_samples})")

    @staticmethod
    def _n_pools(run) -> int:
        n = getattr(run.data, "n_iterations", None)
        return n if n is not None else len(run.cfg.data.get("n_unlabelled") or [])

    def _lambdas(self) -> list[float]:
        lams = self.lambdas
        return [float(lams)] if isinstance(lams, (int, float)) else [float(x) for x in lams]

    def lam(self, i: int) -> float:
        """λ of iteration i (1-based); the last entry repeats when there are more iterations."""
        lams = self._lambdas()
        return lams[min(i, len(lams)) - 1]

    def _epochs(self, v) -> dict:
        return {} if v is None else {"num_train_epochs": float(v)}

    # ---- the loop -----------------------------------------------------------------------------
    def __call__(self, run) -> MethodResult:
        from methods.core.dpo import train_dpo
        from methods.core.evaluation import evaluate
        from methods.core.io import atomic_write_json, atomic_write_jsonl, read_json
        from methods.core.pairs import labelled_pairs, read_pairs

        n_iter = self.n_iterations or self._n_pools(run)
        prefix = run.cfg.get("variant") or self.name

        # seed: exactly the pairs of `method=dpo method.labels=seed`
        d = run.stage("seed_pairs", lambda d: atomic_write_jsonl(d / "pairs.jsonl", labelled_pairs(run, run.data.seed_items())))
        seed_pairs = read_pairs(d / "pairs.jsonl")
        policy = train_dpo(run, seed_pairs, stage="seed_train", **self._epochs(self.seed_epochs))
        m0 = evaluate(run, policy, stage="iter0_eval", generator=f"{prefix}_iter0") if self.eval_iterations else {}
        rows = [self._row(0, m0, n_pairs=len(seed_pairs), n_prompts=len(run.data.seed_items()), trained=True)]
        self._report(run, rows)

        reference_of_policy = run.base_model_path  # the DPO reference π_{i-2} of π_{i-1}
        for i in range(1, n_iter + 1):
            pool = run.data.unlabelled(i)
            samples = self._samples(run, i, pool, policy)
            dl = run.stage(f"iter{i}_labels", lambda d: self._label(run, d, pool, samples, policy, reference_of_policy))
            pairs = read_pairs(dl / "pairs.jsonl")
            label_stats = read_json(dl / "stats.json")
            train_stats, trained = {}, bool(pairs)
            if pairs:
                new_policy, train_stats = self._train(run, i, pairs, policy, train_dpo)
                reference_of_policy, policy = policy, new_policy
            else:
                log.warning("spa iteration %d: all %d prompts' samples tied, no pair; the policy carries over", i, len(pool))
            last = i == n_iter
            if last:  # the pipeline's final evaluation: same stage and generator, so it runs once
                m = evaluate(run, policy)
            else:
                m = evaluate(run, policy, stage=f"iter{i}_eval", generator=f"{prefix}_iter{i}") if self.eval_iterations else {}
            rows.append(self._row(i, m, n_pairs=len(pairs), n_prompts=len(pool), trained=trained,
                                  label_stats=label_stats, train_stats=train_stats, lam=self.lam(i)))
            self._report(run, rows)
        atomic_write_json(run.dir / "spa_iterations.json", rows)
        return MethodResult(policy, {
            "iterations": rows,
            "n_pairs": len(seed_pairs) + sum(r["n_pairs"] for r in rows[1:]),
            "n_seed_pairs": len(seed_pairs),
            "judge_reference": self.judge_reference,
        })

    # ---- stages -------------------------------------------------------------------------------
    def _samples(self, run, i: int, pool: list[dict], policy: str) -> list[list[dict]]:
        from methods.core.generation import SamplingParams
        from methods.core.io import atomic_write_jsonl, iter_rows
        from methods.core.pairs import sample

        params = SamplingParams(n=self.n_samples, temperature=self.temperature, top_p=self.top_p,
                                max_new_tokens=self.max_new_tokens, seed=run.cfg.seed + i)

        def work(d: Path) -> None:
            outs = sample(run, pool, params, model_path=policy)
            atomic_write_jsonl(d / "samples.jsonl", [{"id": it["id"], "samples": ss} for it, ss in zip(pool, outs)])

        d = run.stage(f"iter{i}_samples", work)
        by_id = {row["id"]: row["samples"] for _, row in iter_rows(d / "samples.jsonl")}
        return [by_id[it["id"]] for it in pool]

    def _label(self, run, d: Path, pool, samples, policy: str, reference_of_policy: str) -> None:
        from methods.core.io import atomic_write_json, atomic_write_jsonl
        from methods.core.pairs import pairs_from_labels, unfinished_share
        from methods.core.scoring import implicit_reward
        from methods.spa.labels import external_scores, gold_agreement, logprobs, regroup

        ref = self.judge_reference
        if ref in IMPLICIT:
            prompts = [it["instruction"] for it, ss in zip(pool, samples) for _ in ss]
            responses = [s["text"] for ss in samples for s in ss]
            kw = dict(batch_size=self.score_batch_size, max_length=run.cfg.trainer.args.get("max_length"))
            pol = logprobs(run, policy, prompts, responses, **kw)
            ref_path = {"sft": run.base_model_path, "previous": reference_of_policy, "none": None}[ref]
            ref_lp = logprobs(run, ref_path, prompts, responses, **kw) if ref_path else None
            beta = self.reward_beta if self.reward_beta is not None else run.cfg.trainer.args.beta
            flat = implicit_reward(pol, ref_lp, beta)
        else:
            assert ref in EXTERNAL
            flat = external_scores(run.judge if ref == "judge" else run.labeller, pool, samples)
        labelled = [{"id": it["id"], "samples": ss, "scores": sc} for it, ss, sc in zip(pool, samples, regroup(flat, samples))]
        # the data set's switch: a sample cut at max_new_tokens is no pair member (unless it is off)
        drop = (run.cfg.data.get("label_sampling") or {}).get("drop_unfinished", True)
        pairs = pairs_from_labels(pool, labelled, drop_unfinished=drop)
        stats = {"n_prompts": len(pool), "n_pairs": len(pairs), "n_tied_prompts": len(pool) - len(pairs),
                 "unfinished_share": unfinished_share(labelled), "drop_unfinished": drop,
                 "judge_reference": ref, **gold_agreement(pairs, run.labeller, {it["id"]: it for it in pool})}
        atomic_write_jsonl(d / "labels.jsonl", labelled)
        atomic_write_jsonl(d / "pairs.jsonl", pairs)
        atomic_write_json(d / "stats.json", stats)

    def _train(self, run, i: int, pairs: list[dict], policy: str, train_dpo) -> tuple[str, dict]:
        from methods.core.io import read_json
        from methods.spa.loss import RefineSettings, SelfRefinedDPOTrainer

        stage = f"iter{i}_train"
        stats_path = run.dir / stage / "spa_stats.json"
        settings = RefineSettings(lam=self.lam(i), alpha=self.alpha, window=self.window, percentile=self.percentile,
                                  warmup_fraction=self.warmup_fraction,
                                  threshold_convention=self.threshold_convention, stats_path=str(stats_path))
        # init = π_{i-1}; TRL's reference is the initial model, so π_ref = π_{i-1} as in the paper
        new_policy = train_dpo(run, pairs, stage=stage, init_path=policy,
                               trainer_cls=SelfRefinedDPOTrainer.configured(settings), **self._epochs(self.iteration_epochs))
        return new_policy, (read_json(stats_path) if stats_path.exists() else {})

    # ---- metrics ------------------------------------------------------------------------------
    @staticmethod
    def _row(i, m: dict, n_pairs: int, n_prompts: int, trained: bool, label_stats=None, train_stats=None, lam=None) -> dict:
        label_stats, train_stats = label_stats or {}, train_stats or {}
        return {
            "iteration": int(i),
            **{k: m.get(k) for k in ROW_METRICS},
            "self_label_accuracy": label_stats.get("self_label_accuracy"),
            "gold_tie_share": label_stats.get("gold_tie_share"),
            "unfinished_share": label_stats.get("unfinished_share"),
            "noisy_share": train_stats.get("noisy_share"),
            "flagged_share": train_stats.get("flagged_share"),
            "mean_margin": train_stats.get("mean_margin"),
            "n_pairs": n_pairs,
            "n_prompts": n_prompts,
            "lambda": lam,
            "trained": trained,
        }

    @staticmethod
    def _report(run, rows: list[dict]) -> None:
        r = rows[-1]
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        log.info("spa iteration %d: win rate %s (LC %s), pairs %d, self-label accuracy %s (gold ties %s), "
                 "noisy share %s, mean margin %s", r["iteration"], fmt(r["win_rate"]), fmt(r["lc_win_rate"]),
                 r["n_pairs"], fmt(r["self_label_accuracy"]), fmt(r["gold_tie_share"]), fmt(r["noisy_share"]),
                 fmt(r["mean_margin"]))
