"""`method=ser`: Self-Evolved Reward learning (Huang et al., arXiv 2411.00418), the whole loop.

    RM_0 = reward model on the seed pairs D_0 (the human labels: `data.seed_fraction` of the labelled pool)
    for n = 1 .. max_loops:
        RM_{n-1} scores both answers of every pool pair (labels hidden), p = σ(RM(x, y))
        select the pairs of this loop's learning status (methods/ser/selection.py); stop if too few
        the higher-p answer is "chosen"; D_n = selected ∪ D_{n-1}; the selected pairs leave the pool
        RM_n = reward model on D_n (from the SFT model, or from RM_{n-1})
    policy: PPO against σ(RM_final) (METHODS.md; or its raw score), DPO on RM-labelled pairs (the cheaper option), or none

Pairs (`pairs=data`, the paper): the labelled pool's pairs. On data sets that ship pairs they are the
data's; on the gold-judge benchmark, the SFT model's samples labelled by the gold judge (as dpo_all's).
The seed prompts' pairs keep their labels; of the others, `heldout_fraction` (drawn with the data seed)
measure every RM and the rest form the pool, labels hidden: their gold labels are kept aside only to
measure the self-labels. `pairs=policy`: the pool is instead K samples of the SFT model per prompt of
the first unlabelled pool (the RM's highest- and lowest-scored form the pair), gold-scored (when the data
has a pointwise gold labeller) only for that measure.

Each loop's row: the status used, pairs selected, their self-label accuracy (against the gold labels),
the RM's pairwise accuracy on the held-out pairs (± SE) and on the whole pool; the metrics put the seed
RM and an RM trained on every non-held-out pair with its true label (`reference_rm`, the paper's two
reference points; the seed unflipped) beside the final RM, with the paired difference over the held-out
pairs.
`shuffle_seed_labels` is the control: each seed pair's label flipped with probability ½.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.core.contract import Iteration, MethodResult, Policy
from methods.iterative_dpo import IterativeDPO  # its pool count: one rule for every method
from methods.judges.base import sigmoid
from methods.ser.reward import TRANSFORMS
from methods.ser.selection import RULES, Thresholds, choose, pairwise_correct, resolve_min_pairs, status

log = logging.getLogger("selfalign")

PAIR_SOURCES = ("data", "policy")
POLICIES = ("ppo", "dpo", "none")
RETRAIN_FROM = ("sft", "previous")
LOSSES = ("logsigmoid", "hinge")
RL_PROMPTS = ("labelled", "unlabelled")
POOL_FIELDS = {"id": str, "prompt": (str, list), "answers": list}  # + gold_scores: list, or None


@dataclass
class SER:
    name: str = "ser"
    pairs: str = "data"  # data (the labelled pool's pairs, labels hidden) | policy (K SFT samples a prompt)
    n_policy_samples: int = 2  # K of pairs=policy: the RM's highest- and lowest-scored samples form the pair
    heldout_fraction: float = 0.25  # of the non-seed pairs: they measure every RM, no RM trains on them
    tau_high: float = 0.55
    tau_low: float = 0.45
    tau_delta: float = 0.3
    min_pairs: float = 600  # >= 1: a count (paper, HH-RLHF); in (0, 1): a share of the initial pool
    rule: str = "switch"  # switch (easy, then hard: the paper) | released (easy or hard in one pass: the code)
    max_loops: int = 3
    retrain_from: str = "sft"  # sft (the code: every RM from the SFT model) | previous (continue RM_{n-1})
    loss: str = "logsigmoid"  # logsigmoid (the code) | hinge (the paper: max(0, Δ − (r_w − r_l)))
    hinge_margin: float = 1.0  # Δ (the paper does not state it)
    template: str | None = "Question: {prompt}\n\nAnswer: {response}"  # the code's; null = the chat template
    reference_rm: bool = True  # also train the all-labels RM (the paper's upper reference point)
    shuffle_seed_labels: bool = False  # the control: seed labels flipped with probability ½
    policy: str = "ppo"  # ppo | dpo | none
    rl_prompts: str = "labelled"  # PPO's prompts: the labelled pool's | the first unlabelled pool's
    n_rl_prompts: int | None = None  # null = all of them
    rl_reward: str = "sigmoid"  # sigmoid: σ(RM) | logit: the RM's raw score (the code's ppo.py, baseline 0)
    temperature: float = 0.7  # pairs=policy sampling
    top_p: float = 1.0
    max_new_tokens: int = 300
    score_batch_size: int = 16
    reward_trainer: Any = None  # conf/trainer/reward* as trainers.reward
    rl_trainer: Any = None  # conf/trainer/ppo as trainers.rl (policy=ppo)
    policy_trainer: Any = None  # conf/trainer/dpo* as trainers.policy (policy=dpo)

    # ---- checks -------------------------------------------------------------------------------
    def validate(self, run) -> None:
        from methods.core.trainers.reward import RewardTrainerSpec, check_template
        from methods.data.sources import has_seed_share

        for key, options in (("pairs", PAIR_SOURCES), ("policy", POLICIES), ("retrain_from", RETRAIN_FROM),
                             ("loss", LOSSES), ("rule", RULES), ("rl_prompts", RL_PROMPTS),
                             ("rl_reward", tuple(TRANSFORMS))):
            if getattr(self, key) not in options:
                raise ValueError(f"method.{key}={getattr(self, key)!r}: choose one of {list(options)}")
        self.thresholds.check()
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"method.heldout_fraction={self.heldout_fraction}: in (0, 1)")
        if not self.min_pairs > 0:
            raise ValueError(f"method.min_pairs={self.min_pairs}: a count >= 1 or a share in (0, 1)")
        if self.n_policy_samples < 2:
            raise ValueError(f"method.n_policy_samples={self.n_policy_samples}: K >= 2 samples form a pair")
        if self.max_loops < 0:
            raise ValueError(f"method.max_loops={self.max_loops}: >= 0")
        if self.template is not None:
            check_template(self.template, "method.template")
        if not isinstance(self.reward_trainer, RewardTrainerSpec):
            raise ValueError("method.reward_trainer: a conf/trainer/reward* entry (trainer@trainers.reward=reward|"
                             f"reward_lora), got {type(self.reward_trainer).__name__}")
        self.reward_trainer.validate("trainers.reward")
        if not has_seed_share(run.cfg.data):
            raise ValueError(f"method=ser: data={run.cfg.data.name} has no seed share (data.seed_fraction "
                             "or data.n_seed)")
        if self.pairs == "policy" and IterativeDPO.n_pools(run) < 1:
            raise ValueError("method.pairs=policy samples the first unlabelled pool: set data.n_unlabelled")
        if self.policy == "ppo":
            if not callable(getattr(self.rl_trainer, "train", None)):
                raise ValueError("method.policy=ppo: method.rl_trainer must be a conf/trainer/ entry (trainers.rl)")
            self.rl_trainer.validate("trainers.rl")
            if self.rl_prompts == "unlabelled" and IterativeDPO.n_pools(run) < 1:
                raise ValueError("method.rl_prompts=unlabelled: set data.n_unlabelled")
        if self.policy == "dpo":
            from methods.iterative_dpo import check_dpo_trainer

            check_dpo_trainer(self.policy_trainer, self.name)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.tau_high, self.tau_low, self.tau_delta)

    # ---- the loop -----------------------------------------------------------------------------
    def __call__(self, run) -> MethodResult:
        from methods.core.io import read_json, read_rows
        from methods.core.pairs import read_pairs

        d = run.stage("ser_data", lambda d: self._data(run, d))
        seed, heldout = read_pairs(d / "seed.jsonl"), read_pairs(d / "heldout.jsonl")
        pool = read_rows(d / "pool.jsonl", POOL_FIELDS)
        data_stats = read_json(d / "stats.json")
        min_pairs = resolve_min_pairs(self.min_pairs, len(pool))

        train_set, rm = list(seed), self._train_rm(run, seed, "rm0_train", None)
        rows, scored, remaining, stop, pending = [], [], {p["id"] for p in pool}, "max_loops", {}
        for n in range(self.max_loops + 1):
            scores = self._scores(run, rm, f"rm{n}_scores", heldout, pool)
            scored.append(scores)
            # row n: RM_n, and the selection (by RM_{n-1}) that made its training set D_n
            rows.append({"status": "seed", "n_train_pairs": len(train_set), **pending,
                         **self._accuracies(scores, heldout, pool)})
            if n == self.max_loops:
                break
            cands = [p for p in pool if p["id"] in remaining]
            used, picked = choose([status(*extremes(scores["pool"][p["id"]]), self.thresholds) for p in cands],
                                  min_pairs, self.rule)
            if used is None:
                stop = f"fewer than {min_pairs} pairs qualify"
                break
            chosen = [self_label(cands[k], scores["pool"][cands[k]["id"]]) for k in sorted(picked)]
            pending = {"status": used, "n_selected": len(chosen), **self_label_accuracy(chosen)}
            remaining -= {p["id"] for p in chosen}
            train_set = train_set + [strip(p) for p in chosen]  # D_n = selected ∪ D_{n-1}
            rm = self._train_rm(run, train_set, f"rm{n + 1}_train", rm if self.retrain_from == "previous" else None)
        iterations = [Iteration(f"loop{n}", n, r) for n, r in enumerate(rows)]
        for it in iterations:
            self._report(it)

        true_seed = read_pairs(d / "seed_true.jsonl")
        metrics = {**data_stats, "min_pairs": min_pairs, "n_loops": len(rows) - 1, "stop": stop,
                   "n_self_labelled": sum(r.get("n_selected", 0) for r in rows),
                   **self._comparisons(run, rows, scored, true_seed, heldout, pool)}
        policy = self._policy(run, rm, seed, pool, heldout, scored[-1], metrics)
        return MethodResult(policy, metrics, iterations, labelled_pairs=len(seed))  # held-out pairs only measure

    # ---- data ---------------------------------------------------------------------------------
    def _data(self, run, d: Path) -> None:
        from methods.core.io import atomic_write_json, atomic_write_jsonl
        from methods.core.pairs import labelled_pairs

        seed_ids = {it["id"] for it in run.data.seed_items()}
        pairs = [strip(p) for p in labelled_pairs(run, run.data.labelled())]
        seed = [p for p in pairs if p["id"] in seed_ids]
        rest = [p for p in pairs if p["id"] not in seed_ids]
        rng = random.Random(run.data_seed)
        rng.shuffle(rest)
        n_held = round(self.heldout_fraction * len(rest))
        heldout, rest = rest[:n_held], rest[n_held:]
        pool = self._policy_pool(run) if self.pairs == "policy" else [hide(p, rng) for p in rest]
        true_seed = [dict(p) for p in seed]
        n_flipped = 0
        if self.shuffle_seed_labels:
            flips = random.Random(run.data_seed + 1)
            for p in seed:
                if flips.random() < 0.5:
                    p["chosen"], p["rejected"] = p["rejected"], p["chosen"]
                    n_flipped += 1
        if not seed:
            raise ValueError("method=ser: the seed prompts gave no pair (all their samples tied): no RM_0")
        if not heldout or not pool:
            raise ValueError(f"method=ser: {len(pairs) - len(seed)} non-seed pairs give {len(heldout)} held-out and "
                             f"{len(pool)} pool pairs; both must be non-empty (data.n_labelled, "
                             "method.heldout_fraction)")
        atomic_write_jsonl(d / "seed.jsonl", seed)  # as RM_0 trains on them (flipped in the control)
        atomic_write_jsonl(d / "seed_true.jsonl", true_seed)
        atomic_write_jsonl(d / "heldout.jsonl", heldout)
        atomic_write_jsonl(d / "pool.jsonl", pool)
        atomic_write_json(d / "stats.json", {"n_seed_pairs": len(seed), "n_heldout_pairs": len(heldout),
                                             "n_pool_pairs": len(pool), "n_seed_flipped": n_flipped,
                                             "pairs": self.pairs})

    def _policy_pool(self, run) -> list[dict]:
        from methods.core.generation import SamplingParams
        from methods.core.pairs import sample
        from methods.judges.base import Scorer

        items = run.data.unlabelled(1)
        k = self.n_policy_samples
        params = SamplingParams(n=k, temperature=self.temperature, top_p=self.top_p,
                                max_new_tokens=self.max_new_tokens, seed=run.cfg.seed)
        answers = [[s["text"] for s in ss] for ss in sample(run, items, params)]
        gold = [None] * len(items)
        if isinstance(run.gold, Scorer):  # only to measure the self-labels
            flat = iter(run.gold.score([it for it in items for _ in range(k)], [a for aa in answers for a in aa]))
            gold = [[next(flat) for _ in range(k)] for _ in items]
        return [{"id": it["id"], "prompt": it["instruction"], "answers": aa, "gold_scores": g}
                for it, aa, g in zip(items, answers, gold)]

    # ---- reward models ------------------------------------------------------------------------
    def _spec(self):
        import dataclasses

        return dataclasses.replace(self.reward_trainer, template=self.template)

    def _train_rm(self, run, pairs: list[dict], stage: str, init: str | None) -> str:
        from methods.ser.loss import hinge_trainer

        cls = hinge_trainer(self.hinge_margin) if self.loss == "hinge" else None
        return self._spec().train(run, pairs, stage, init_path=init, trainer_cls=cls)

    def judge(self, rm: str):
        from methods.judges.reward_model import RewardModelJudge

        return RewardModelJudge(name_or_path=rm, batch_size=self.score_batch_size, template=self.template,
                                max_length=int(self.reward_trainer.arg("max_length") or 1024))

    def _scores(self, run, rm: str, stage: str, heldout: list[dict], pool: list[dict]) -> dict:
        from methods.core.io import atomic_write_json, read_json

        def work(d: Path) -> None:
            run.release()
            judge = self.judge(rm)
            out = {}
            items = [{"instruction": p["prompt"]} for p in heldout]
            first = judge.score(items, [p["chosen"] for p in heldout])
            second = judge.score(items, [p["rejected"] for p in heldout])
            out["heldout"] = {p["id"]: [x, y] for p, x, y in zip(heldout, first, second)}
            flat = iter(judge.score([{"instruction": p["prompt"]} for p in pool for _ in p["answers"]],
                                    [a for p in pool for a in p["answers"]]))
            out["pool"] = {p["id"]: [next(flat) for _ in p["answers"]] for p in pool}
            atomic_write_json(d / "scores.json", out)

        return read_json(run.stage(stage, work) / "scores.json")

    def _accuracies(self, scores: dict, heldout: list[dict], pool: list[dict]) -> dict:
        from methods.core.paired import mean_se

        held = [pairwise_correct(*scores["heldout"][p["id"]]) for p in heldout]
        acc, se = mean_se(held)
        se = se if len(held) > 1 else None  # one held-out pair has no spread to measure
        pool_acc = self_label_accuracy([self_label(p, scores["pool"][p["id"]]) for p in pool])
        return {"heldout_accuracy": acc, "heldout_se": se, "pool_accuracy": pool_acc["self_label_accuracy"]}

    def _comparisons(self, run, rows, scored, seed, heldout, pool) -> dict:
        """Seed RM, final RM and all-labels RM on the held-out pairs, with paired differences."""
        from methods.core.paired import paired, prefixed

        def per_pair(scores):
            return {p["id"]: pairwise_correct(*scores["heldout"][p["id"]]) for p in heldout}

        seed_c, final_c = per_pair(scored[0]), per_pair(scored[-1])
        out = {"seed_rm_accuracy": rows[0]["heldout_accuracy"], "seed_rm_se": rows[0]["heldout_se"],
               "final_rm_accuracy": rows[-1]["heldout_accuracy"], "final_rm_se": rows[-1]["heldout_se"]}
        out.update(prefixed("final_vs_seed", paired(final_c, seed_c)))
        truth = [t for t in map(gold_pair, pool) if t is not None]
        if self.reference_rm and not truth:
            log.warning("ser: no pool pair has a gold label (no pointwise gold labeller): no all-labels RM")
        if self.reference_rm and truth:
            ref = self._train_rm(run, seed + truth, "rm_all_train", None)
            ref_scores = self._scores(run, ref, "rm_all_scores", heldout, pool)
            acc = self._accuracies(ref_scores, heldout, pool)
            out.update({"all_labels_rm_accuracy": acc["heldout_accuracy"], "all_labels_rm_se": acc["heldout_se"],
                        "n_all_labels_pairs": len(seed) + len(truth)})
            out.update(prefixed("final_vs_all_labels", paired(final_c, per_pair(ref_scores))))
        return out

    # ---- the policy ---------------------------------------------------------------------------
    def _policy(self, run, rm: str, seed, pool, heldout, final_scores: dict, metrics: dict) -> Policy:
        """The policy stage; `final_scores` are the final RM's scores (its DPO labels)."""
        metrics["policy"] = self.policy
        if self.policy == "none":
            return Policy(run.base_model_path)
        if self.policy == "dpo":  # the seed keeps its labels; the final RM labels every other pair (dpo_all's)
            s = final_scores
            labelled = [self_label(p, s["pool"][p["id"]]) for p in pool if len(set(s["pool"][p["id"]])) > 1]
            labelled += [self_label(hide_kept(p), s["heldout"][p["id"]]) for p in heldout
                         if s["heldout"][p["id"]][0] != s["heldout"][p["id"]][1]]
            acc = self_label_accuracy(labelled)
            metrics.update({"n_policy_pairs": len(seed) + len(labelled),
                            "policy_pairs_self_label_accuracy": acc["self_label_accuracy"],
                            "policy_pairs_n_gold_known": acc["n_gold_known"]})
            return Policy(self.policy_trainer.train(run, seed + [strip(p) for p in labelled], "policy_train"))
        from methods.core.trainers.rl import log_summary
        from methods.ser.reward import RMReward

        items = run.data.labelled() if self.rl_prompts == "labelled" else run.data.unlabelled(1)
        items = items[: self.n_rl_prompts] if self.n_rl_prompts else items
        rows = [{"id": it["id"], "prompt": it["instruction"], "item": it} for it in items]
        policy = self.rl_trainer.train(run, rows, "policy_train", scorer=RMReward(self.judge(rm), self.rl_reward))
        summary = log_summary(policy)
        metrics.update({"n_rl_prompts": len(rows), "rl_trainer": self.rl_trainer.name, **summary})
        for end in ("first", "last"):  # the RM's reward under its own name
            if f"{end}_score" in summary:
                metrics[f"{end}_rm_score"] = metrics.pop(f"{end}_score")
        return Policy(policy)

    def _report(self, it: Iteration) -> None:
        s = it.stats
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        log.info("ser loop %d: %s pairs selected %s (self-label accuracy %s); RM on %d pairs: held-out accuracy "
                 "%s ± %s, pool %s", it.index, s.get("status", "seed"), s.get("n_selected", "-"),
                 fmt(s.get("self_label_accuracy")), s["n_train_pairs"], fmt(s["heldout_accuracy"]),
                 fmt(s["heldout_se"]), fmt(s["pool_accuracy"]))


# ---- rows ------------------------------------------------------------------------------------------
def strip(pair: dict) -> dict:
    return {"id": pair["id"], "prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}


def hide(pair: dict, rng: random.Random) -> dict:
    """A pool row: the two answers in random order, `gold_scores` 1 for the truly better one, 0 else."""
    g = rng.randrange(2)
    answers = [pair["rejected"], pair["chosen"]] if g else [pair["chosen"], pair["rejected"]]
    return {"id": pair["id"], "prompt": pair["prompt"], "answers": answers, "gold_scores": [1 - g, g]}


def hide_kept(pair: dict) -> dict:
    """A labelled pair as a pool row in its own order (chosen first), for scores taken in that order."""
    return {"id": pair["id"], "prompt": pair["prompt"], "answers": [pair["chosen"], pair["rejected"]],
            "gold_scores": [1, 0]}


def extremes(scores: list[float]) -> tuple[float, float]:
    """(p of the RM's best answer, p of its worst): the pair a row offers."""
    return sigmoid(max(scores)), sigmoid(min(scores))


def self_label(row: dict, scores: list[float]) -> dict:
    """The pool row as a pair: the answer the RM scored highest is chosen, its lowest rejected (first
    occurrence on ties); `gold_agrees` whether the gold labels order the two alike (None: gold tie or none)."""
    from methods.core.pairs import best_worst

    hi, lo = best_worst(scores) or (0, 0)
    g = row.get("gold_scores")
    agrees = None if g is None or g[hi] == g[lo] else g[hi] > g[lo]
    return {"id": row["id"], "prompt": row["prompt"], "chosen": row["answers"][hi],
            "rejected": row["answers"][lo], "gold_agrees": agrees}


def gold_pair(row: dict) -> dict | None:
    """The pool row's gold-best vs gold-worst answers (None: no gold labels, or all tie)."""
    from methods.core.pairs import best_worst

    g = row.get("gold_scores")
    bw = None if g is None else best_worst(g)
    if bw is None:
        return None
    hi, lo = bw
    return {"id": row["id"], "prompt": row["prompt"], "chosen": row["answers"][hi], "rejected": row["answers"][lo]}


def self_label_accuracy(pairs: list[dict]) -> dict:
    known = [p["gold_agrees"] for p in pairs if p.get("gold_agrees") is not None]
    return {"self_label_accuracy": sum(known) / len(known) if known else None, "n_gold_known": len(known)}
