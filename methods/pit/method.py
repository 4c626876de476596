"""`method=pit`: ImPlicit self-ImprovemenT (Wang et al., arXiv 2310.00898, ICLR 2024); no public code, the
details are secondary (METHODS.md). The policy M_P stays as it is; an improver M_PIT learns to rewrite
an answer into a better one, from preference pairs (x, y_w ≻ y_l):

    1. improvement SFT:  M_PIT from the SFT model, max log M_PIT(y_w | x, y_l)        stage improver_sft
    2. reward-gap model: r_gap(x, y, y_ref), the five-term loss (gap.py)                stage gap_train
    3. RL curriculum:    PPO of M_PIT against r_gap(x, y, y_ref), KL to M_PIT's SFT    stages rl_0, rl_0_1
         round 0: y_ref ∈ {y_l, y_w} of the training pairs
         round 1: y_ref ~ M_P(x) on the training pairs' prompts                         stage round1_refs
    4. inference:        y_0 = M_P(x), y_{t+1} = M_PIT(x, y_t), t < n_rounds (inference.py)

Pairs: the labelled pool's (`labels=all`, the paper's whole preference set; `seed`: the seed share, the
human-label budget of a comparison); `heldout_fraction` of them (drawn with the data seed) train nothing
and measure the gap model's orderings. The result's policy is M_P with the rounds as its inference
procedure; iteration `round<t>` is every eval prompt's answer as of round t (round 0: M_P's own greedy
answer, the evaluation's baseline when M_P is the base model, so its win rate is 50 by construction).
`ablations` adds, at `ablation_rounds` rounds of inference: the SFT improver (no RL), each shorter
prefix of the curriculum (round 0 only is the curriculum's first stage), each later round trained
alone from the SFT improver (round 1 only: one more PPO); `sweep_temperatures` evaluates the final
improver at other sampling temperatures (the paper's optimum: 0.4).
"""
from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.core.contract import Iteration, MethodResult, Policy, stored_answers
from methods.pit.inference import STOP_RULES

log = logging.getLogger("selfalign")

LABELS = ("all", "seed")
ROUNDS = (0, 1)
PAIR_FIELDS = {"id": str, "prompt": (str, list), "chosen": str, "rejected": str}


@dataclass
class PIT:
    name: str = "pit"
    labels: str = "all"  # all: every labelled pair (the paper) | seed: the seed share (a comparison's budget)
    heldout_fraction: float = 0.25  # of the pairs: they measure the gap model, nothing trains on them
    prompt_version: str = "v1"  # methods/pit/prompts/<version>.yaml
    policy_model: str | None = None  # M_P: a model directory; null = the run's base model
    curriculum: list = field(default_factory=lambda: [0, 1])  # RL rounds in order; [] = improvement SFT only
    n_policy_refs: int = 1  # round 1: samples of M_P per training prompt
    ref_temperature: float = 0.7  # round 1's M_P sampling
    n_rounds: int = 3  # inference rounds y_1 .. y_n
    temperature: float = 0.4  # the improver's sampling at inference (the paper's optimum for PIT)
    top_p: float = 1.0
    max_new_tokens: int | None = None  # null = eval.max_new_tokens: the same answer budget as every method
    stop: str = "none"  # none | unchanged | gap (inference.py)
    ablations: bool = False
    ablation_rounds: int = 1
    sweep_temperatures: list = field(default_factory=list)  # the final improver at ablation_rounds rounds
    score_batch_size: int = 16
    improver_trainer: Any = None  # conf/trainer/sft as trainers.improver
    gap_trainer: Any = None  # conf/trainer/reward as trainers.reward
    rl_trainer: Any = None  # conf/trainer/ppo as trainers.rl

    # ---- checks -------------------------------------------------------------------------------
    def validate(self, run) -> None:
        from methods.core.trainers.reward import RewardTrainerSpec
        from methods.core.trainers.sft import SFTTrainerSpec
        from methods.data.sources import has_seed_share
        from methods.pit.prompts import load_prompts

        if self.labels not in LABELS:
            raise ValueError(f"method.labels={self.labels!r}: choose one of {list(LABELS)}")
        if self.stop not in STOP_RULES:
            raise ValueError(f"method.stop={self.stop!r}: choose one of {list(STOP_RULES)}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"method.heldout_fraction={self.heldout_fraction}: in (0, 1)")
        cur = list(self.curriculum)
        if any(r not in ROUNDS for r in cur) or cur != sorted(set(cur)):
            raise ValueError(f"method.curriculum={cur}: distinct rounds of {list(ROUNDS)} in order (e.g. [0, 1], [1])")
        labels = [temperature_label(t) for t in self.sweep_temperatures]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method.sweep_temperatures={list(self.sweep_temperatures)}: each temperature once")
        if not 0 < self.top_p <= 1 or self.score_batch_size < 1 or (self.max_new_tokens is not None
                                                                     and self.max_new_tokens < 1):
            raise ValueError(f"method.top_p={self.top_p} (in (0, 1]), method.score_batch_size={self.score_batch_size} "
                             f"(>= 1), method.max_new_tokens={self.max_new_tokens} (>= 1 or null)")
        for key in ("n_rounds", "ablation_rounds", "n_policy_refs"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"method.{key}={v!r}: an integer >= 1")
        for t in [self.temperature, self.ref_temperature, *self.sweep_temperatures]:
            if not isinstance(t, (int, float)) or t < 0:
                raise ValueError(f"method temperature {t!r}: a number >= 0")
        load_prompts(self.prompt_version)
        self._params(run, self.temperature, 1)
        if not isinstance(self.improver_trainer, SFTTrainerSpec):
            raise ValueError("method.improver_trainer: a conf/trainer/sft entry (trainers.improver), got "
                             f"{type(self.improver_trainer).__name__}")
        self.improver_trainer.validate("trainers.improver")
        if not isinstance(self.gap_trainer, RewardTrainerSpec):
            raise ValueError("method.gap_trainer: a conf/trainer/reward* entry (trainers.reward), got "
                             f"{type(self.gap_trainer).__name__}")
        self.gap_trainer.validate("trainers.reward")
        gap_batch = int(self.gap_trainer.arg("per_device_train_batch_size", 8))
        if gap_batch % 2 or self.gap_trainer.arg("auto_find_batch_size"):
            raise ValueError("trainers.reward.args.per_device_train_batch_size: even, and no auto_find_batch_size "
                             "(a pair is two rows, gap.py)")
        if self.gap_trainer.template is not None:
            raise ValueError(f"trainers.reward.template={self.gap_trainer.template!r}: PIT's gap model reads its own "
                             f"text (methods/pit/prompts/{self.prompt_version}.yaml, 'gap'); leave it null")
        if cur or self.ablations:
            if not callable(getattr(self.rl_trainer, "train", None)) or self.rl_trainer.name != "ppo":
                raise ValueError("method.rl_trainer: conf/trainer/ppo (trainers.rl); PIT's rounds are PPO")
            self.rl_trainer.validate("trainers.rl")
            if self.rl_trainer.lora and len(cur) > 1:
                raise ValueError("method.curriculum with two rounds needs trainers.rl.lora: null (the second round's "
                                 "KL is to M_PIT's SFT; under LoRA the reference is the round's initial weights)")
        if self.labels == "seed" and not has_seed_share(run.cfg.data):
            raise ValueError(f"method.labels=seed: data={run.cfg.data.name} has no seed share (data.seed_fraction "
                             "or data.n_seed)")
        if self.policy_model is not None and not Path(self.policy_model).is_dir():
            raise ValueError(f"method.policy_model={self.policy_model!r}: not a model directory")

    def _params(self, run, temperature: float, t: int):
        from methods.core.evaluation import eval_params
        from methods.core.generation import SamplingParams

        budget = self.max_new_tokens or eval_params(run).max_new_tokens
        return SamplingParams(n=1, temperature=float(temperature), top_p=self.top_p, max_new_tokens=budget,
                              seed=run.cfg.seed + 1000 * t)

    # ---- the method ---------------------------------------------------------------------------
    def __call__(self, run) -> MethodResult:
        from methods.core.io import read_json
        from methods.core.pairs import read_pairs
        from methods.pit.prompts import load_prompts

        prompts = load_prompts(self.prompt_version)
        d = run.stage("pit_data", lambda d: self._data(run, d, prompts))
        train, heldout = read_pairs(d / "train.jsonl"), read_pairs(d / "heldout.jsonl")
        metrics = {**read_json(d / "stats.json"), **prompts.describe(), "stop": self.stop,
                   "curriculum": "+".join(map(str, self.curriculum)), "inference_temperature": self.temperature}

        sft = self.improver_trainer.train(run, [sft_row(p, prompts) for p in train], "improver_sft")
        gap = self._gap_model(run, train, prompts)
        metrics.update(self._orderings(run, gap, heldout, prompts))

        improvers = {"sft": sft}  # name -> model directory, in training order
        prev, done = sft, []
        for r in self.curriculum:
            done.append(r)
            prev = self._rl(run, train, done, prev, sft, gap, prompts, metrics)
            improvers["round" + "_".join(map(str, done))] = prev
        final_path = prev
        if self.ablations:
            for r in self.curriculum[1:]:
                improvers[f"round{r}_alone"] = self._rl(run, train, [r], sft, sft, gap, prompts, metrics)

        items, y0 = self._y0(run)
        mp = self._mp(run)
        rounds = self._infer(run, "infer", final_path, items, y0, self.n_rounds, self.temperature, gap, prompts)
        final = Policy(mp, respond=stored_answers(items, rounds[-1], self.name))
        iterations = []
        for t, (ans, stats) in enumerate(zip(rounds, self._round_stats(run, "infer"))):
            policy = final if t == len(rounds) - 1 else Policy(mp, respond=stored_answers(items, ans, self.name))
            iterations.append(Iteration(f"round{t}", t, {"improver": "none" if t == 0 else "final", **stats}, policy))
        extra = [(name, path, self.temperature) for name, path in improvers.items()
                 if self.ablations and path != final_path]
        extra += [(temperature_label(t), final_path, t) for t in self.sweep_temperatures
                  if t != self.temperature]
        for name, path, temp in extra:
            stage = f"infer_{name}"
            ans = self._infer(run, stage, path, items, y0, self.ablation_rounds, temp, gap, prompts)
            round_stats = self._round_stats(run, stage)
            for t in range(1, len(ans)):
                stats = {"improver": name, "inference_temperature": temp, **round_stats[t]}
                iterations.append(Iteration(f"{name}_round{t}", t, stats,
                                            Policy(mp, respond=stored_answers(items, ans[t], self.name))))
        metrics["n_rounds"] = self.n_rounds
        return MethodResult(final, metrics, iterations, labelled_pairs=len(train))  # held-out pairs only measure

    def _mp(self, run) -> str:
        return self.policy_model or run.base_model_path

    # ---- data ---------------------------------------------------------------------------------
    def _data(self, run, d: Path, prompts) -> None:
        from methods.core.io import atomic_write_json, atomic_write_jsonl
        from methods.core.pairs import labelled_pairs

        items = run.data.labelled() if self.labels == "all" else run.data.seed_items()
        pairs = [{k: p[k] for k in PAIR_FIELDS} for p in labelled_pairs(run, items)]
        n_same = sum(p["chosen"] == p["rejected"] for p in pairs)
        pairs = [p for p in pairs if p["chosen"] != p["rejected"]]  # nothing to improve from
        if len(pairs) < 2:
            raise ValueError(f"method=pit: {len(pairs)} labelled pairs (labels={self.labels}); need >= 2")
        order = list(range(len(pairs)))
        random.Random(run.data_seed).shuffle(order)
        n_held = max(1, round(self.heldout_fraction * len(pairs)))
        if n_held >= len(pairs):
            raise ValueError(f"method.heldout_fraction={self.heldout_fraction}: holds out all {len(pairs)} pairs")
        held = set(order[:n_held])
        train = [p for k, p in enumerate(pairs) if k not in held]
        train, too_long = self._fit(run, train, prompts)
        if not train:
            raise ValueError(f"method=pit: every training pair is longer than trainers.reward.args.max_length "
                             f"({self.gap_trainer.arg('max_length')} tokens) as gap-model text")
        atomic_write_jsonl(d / "train.jsonl", train)
        atomic_write_jsonl(d / "heldout.jsonl", [pairs[k] for k in sorted(held)])
        atomic_write_json(d / "stats.json", {"labels": self.labels, "n_pairs": len(pairs), "n_train_pairs": len(train),
                                             "n_pairs_identical": n_same,
                                             "n_heldout_pairs": n_held, "n_pairs_too_long": len(too_long),
                                             "too_long_pair_ids": too_long[:20]})

    def _fit(self, run, pairs: list[dict], prompts) -> tuple[list[dict], list[str]]:
        """Pairs whose four gap texts all fit trainers.reward.args.max_length (TRL would drop a row, and the
        gap model's rows come in twos), and the ids of the others."""
        import transformers

        max_len = self.gap_trainer.arg("max_length")
        if max_len is None:
            return pairs, []
        tok = transformers.AutoTokenizer.from_pretrained(run.base_model_path)
        keep, drop = [], []
        for p in pairs:
            texts = [prompts.gap_context(p["prompt"], ref) + y + tok.eos_token
                     for ref in (p["chosen"], p["rejected"]) for y in (p["chosen"], p["rejected"])]
            fits = max(len(tok(t)["input_ids"]) for t in texts) <= int(max_len)
            (keep if fits else drop).append(p if fits else p["id"])
        if drop:
            log.warning("pit: %d of %d training pairs over max_length=%s as gap text: left out: %s", len(drop),
                        len(pairs), max_len, drop[:5])
        return keep, drop

    # ---- the gap model ------------------------------------------------------------------------
    def _gap_model(self, run, train: list[dict], prompts) -> str:
        import dataclasses

        from methods.pit.gap import GapRewardTrainer, gap_rows
        from methods.pit.prompts import GAP_TEMPLATE

        spec = dataclasses.replace(self.gap_trainer, template=GAP_TEMPLATE)
        return spec.train(run, gap_rows(train, prompts), "gap_train", trainer_cls=GapRewardTrainer)

    def gap_reward(self, gap: str, prompts):
        # A fresh judge per stage, on purpose: it loads on its first score and goes with the stage, so at
        # paper scale a 7B gap model is not held beside the next stage's policy and engine.
        from methods.judges.reward_model import RewardModelJudge
        from methods.pit.gap import GapReward
        from methods.pit.prompts import GAP_TEMPLATE

        judge = RewardModelJudge(name_or_path=gap, batch_size=self.score_batch_size, template=GAP_TEMPLATE,
                                 max_length=int(self.gap_trainer.arg("max_length") or 1024))
        return GapReward(judge, prompts)

    def _orderings(self, run, gap: str, heldout: list[dict], prompts) -> dict:
        """How often the gap model orders the held-out pairs as trained: r^{wl} > r^{ww}, r^{ll} > r^{lw},
        r^{wl} > r^{lw}, and the whole chain r^{wl} > r^{ww}, r^{ll} > r^{lw} (shares ± SE)."""
        from methods.core.io import atomic_write_json, read_json
        from methods.core.paired import mean_se
        from methods.pit.gap import ordering

        def work(d: Path) -> None:
            run.release()
            reward = self.gap_reward(gap, prompts)
            combos = [(y, ref) for y in ("chosen", "rejected") for ref in ("chosen", "rejected")]
            items = [{"instruction": p["prompt"], "y_ref": p[ref]} for p in heldout for _, ref in combos]
            flat = iter(reward.score(items, [p[y] for p in heldout for y, _ in combos]))
            rows = []
            for p in heldout:
                s = dict(zip(combos, [next(flat) for _ in combos]))
                r = {"wl": s["chosen", "rejected"], "ww": s["chosen", "chosen"], "ll": s["rejected", "rejected"],
                     "lw": s["rejected", "chosen"]}
                rows.append({"id": p["id"], **r, **ordering(r["wl"], r["ww"], r["ll"], r["lw"])})
            atomic_write_json(d / "orderings.json", rows)

        rows = read_json(run.stage("gap_heldout", work) / "orderings.json")
        out = {}
        for key in ("wl_over_ww", "ll_over_lw", "wl_over_lw", "full"):
            m, se = mean_se([float(r[key]) for r in rows])
            out[f"gap_{key}"], out[f"gap_{key}_se"] = m, se
        return out

    # ---- RL -----------------------------------------------------------------------------------
    def _rl(self, run, train, rounds: list[int], init: str, sft: str, gap: str, prompts, metrics: dict) -> str:
        """PPO over the last of `rounds` from `init`, KL to `sft`; stage rl_<rounds joined by _>."""
        from methods.core.trainers.rl import log_summary
        from methods.pit.rl import SFTReferencePPO, round_rows

        r = rounds[-1]
        refs = self._policy_refs(run, train) if r == 1 else None
        stage = "rl_" + "_".join(map(str, rounds))
        cls = functools.partial(SFTReferencePPO, reference_path=sft)
        path = self.rl_trainer.train(run, round_rows(train, r, prompts, refs), stage, init_path=init,
                                     trainer_cls=cls, scorer=self.gap_reward(gap, prompts))
        metrics.update({f"{stage}_{k}": v for k, v in log_summary(path).items()})
        return path

    def _policy_refs(self, run, train: list[dict]) -> dict:
        """Round 1's y_ref: `n_policy_refs` samples of M_P per training prompt."""
        from methods.core.generation import SamplingParams
        from methods.core.io import atomic_write_json, read_json

        def work(d: Path) -> None:
            params = SamplingParams(n=self.n_policy_refs, temperature=self.ref_temperature, top_p=1.0,
                                    max_new_tokens=self._params(run, 0, 0).max_new_tokens, seed=run.cfg.seed)
            outs = run.engine(self._mp(run)).generate([p["prompt"] for p in train], params)
            atomic_write_json(d / "refs.json", {p["id"]: [c.text for c in cs] for p, cs in zip(train, outs)})

        return read_json(run.stage("round1_refs", work) / "refs.json")

    # ---- inference ----------------------------------------------------------------------------
    def _y0(self, run):
        """The eval items and M_P's greedy answers on them (the baseline's, when M_P is the base model)."""
        from methods.core.evaluation import baseline_outputs, eval_items, generate_outputs
        from methods.core.generation import Completion
        from methods.core.io import atomic_write_json, read_json
        from methods.data.interface import ReferenceOutputs

        items = eval_items(run)
        if self.policy_model is None and not isinstance(run.eval_data, ReferenceOutputs):
            rows = baseline_outputs(run, items)
        else:
            d = run.stage("y0", lambda d: atomic_write_json(
                d / "model_outputs.json", generate_outputs(run, items, self._mp(run), "policy")))
            rows = read_json(d / "model_outputs.json")
        return items, [Completion(r["output"], r["n_tokens"], True) for r in rows]

    def _infer(self, run, stage: str, improver: str, items, y0, n_rounds: int, temperature: float, gap, prompts):
        """Stage `stage`: rounds.jsonl, one row per prompt and round; returns answers[t][k]."""
        from dataclasses import asdict

        from methods.core.generation import Completion
        from methods.core.io import atomic_write_json, atomic_write_jsonl, read_json, read_rows
        from methods.pit.inference import gap_rule, iterate, unchanged_rule

        def work(d: Path) -> None:
            engine = run.engine(improver)
            calls = iter(range(1, n_rounds + 1))

            def improve(xs, ys):
                turns = [prompts.improve_turn(x, y) for x, y in zip(xs, ys)]
                return [cs[0] for cs in engine.generate(turns, self._params(run, temperature, next(calls)))]

            reject = None if self.stop == "none" else unchanged_rule if self.stop == "unchanged" else \
                gap_rule(self.gap_reward(gap, prompts))
            rounds, stats = iterate(improve, [it["instruction"] for it in items], y0, n_rounds, reject)
            atomic_write_jsonl(d / "rounds.jsonl", [
                {"id": it["id"], "round": t, "answer": a.text, "n_tokens": a.n_tokens, "finished": a.finished,
                 "stop": a.stop}
                for t, answers in enumerate(rounds) for it, a in zip(items, answers)])
            atomic_write_json(d / "summary.json", {"improver": improver, "temperature": temperature,
                                                   "n_rounds": n_rounds, "stop": self.stop,
                                                   "rounds": [asdict(s) for s in stats]})

        d = run.stage(stage, work)
        rows = read_rows(d / "rounds.jsonl", {"id": str, "round": int, "answer": str, "n_tokens": int})
        by = {(r["id"], r["round"]): r for r in rows}
        n = read_json(d / "summary.json")["n_rounds"]
        return [[Completion(r["answer"], r["n_tokens"], r.get("finished", True))
                 for r in (by[it["id"], t] for it in items)] for t in range(n + 1)]

    def _round_stats(self, run, stage: str) -> list[dict]:
        from methods.core.io import read_json

        return [{"n_rewritten": s["n_rewritten"], "n_rejected": s["n_rejected"], "n_empty": s["n_empty"]}
                for s in read_json(run.dir / stage / "summary.json")["rounds"]]


def temperature_label(t) -> str:
    """A sweep row's name: t02 for 0.2, t10 for 1.0 (1 and 1.0 are one temperature)."""
    return "t" + f"{float(t):.2f}".rstrip("0").replace(".", "")


def sft_row(pair: dict, prompts) -> dict:
    """Improvement SFT: the improver's turn over y_l, y_w as the completion."""
    return {"id": pair["id"], "prompt": prompts.improve_turn(pair["prompt"], pair["rejected"]),
            "completion": pair["chosen"]}
