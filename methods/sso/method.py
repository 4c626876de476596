"""`method=sso`: Self-Steering Optimization (arXiv 2410.17131; v2 "Autonomous Preference Optimization").

    principles p⁺, p⁻ for each query of the generator pool (features drawn per query, or written by a model)
    y⁺ ~ π_SFT(·|x⁺), y⁻ ~ π_SFT(·|x⁻), y_o ~ π_SFT(·|x)   (top_p 0.8, temperature 0.7)   stage gen_samples
    drop a row when y⁺ = y⁻, y⁺ = y_o or y⁻ = y_o; optionally keep only rows each answer of which is
    likelier under its own principle (the log-prob ordering filter)                     stage gen_pairs
    generator = DPO-trainer(init = ref = SFT) on the loss form's rows (methods/sso/loss.py)  stage gen_train
    on every unlabelled pool's queries: y⁺ ~ generator(·|x⁺), y⁻ ~ generator(·|x⁻)      stage policy_samples
    policy = DPO (or IPO) from the SFT model on (x, y⁺ ≻ y⁻)                             stage policy_train

`generator_loss=none` is the principle-based baseline (the paper's PBAA row): no generator; the policy
pairs are the SFT model's principle-steered samples. The metrics measure the instrument the paper did
not: the share of principle-made pairs whose y⁺ the gold judge scores above y⁻ (ties excluded), before
(the SFT model's pairs on the generator pool) and after (the generator's pairs the policy trains on; also
on the generator pool's queries alone, `after_genpool_*`), and how on-policy they are: the mean per-token
log π(y|x) of y⁺ and y⁻ without the principle under the SFT model, where the policy starts (and under the
generator that sampled them, `*_sampler`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.core.paired import prefixed
from methods.core.contract import MethodResult, Policy
from methods.iterative_dpo import IterativeDPO  # its pool count: one rule for every method
from methods.sso.loss import FORMS, generator_rows, generator_trainer
from methods.sso.principles import Principles, Writer, parse_written, steer

PRINCIPLE_MODES = ("features", "written")
POLICY_LOSSES = ("dpo", "ipo")
ROW_FIELDS = {"id": str, "x": (str, list), "y_plus": str, "y_minus": str}


@dataclass
class SSO:
    name: str = "sso"
    principles: str = "features"  # features (v1 / the code: drawn per query) | written (v2: a model writes them)
    principles_file: str | None = None  # null = methods/sso/principles.yaml
    n_features: int = 2  # the code: 2 of 7 (+ concision with its probability)
    writer_model: str | None = None  # principles=written: a model directory; null = the SFT model
    generator_loss: str = "v2"  # v2 | naive | plus | minus | v1 | none (the principle-based baseline)
    gamma: float = 0.1  # γ, the SFT term's weight (v2, naive, plus, minus)
    v1_alpha: float = 0.66  # α of v1's W
    v1_g: float = 0.1  # G of v1
    v1_beta: float = 0.2  # v1's DPO β (the code's), in place of the generator trainer's
    logprob_filter: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 300
    generator_pool: int = 1  # the unlabelled pool the generator trains on; the policy's queries are every pool
    policy_loss: str = "dpo"  # dpo | ipo
    score_batch_size: int = 16
    generator_trainer: Any = None  # conf/trainer/dpo* as trainers.generator
    policy_trainer: Any = None  # conf/trainer/dpo* as trainers.policy

    # ---- checks -------------------------------------------------------------------------------
    def validate(self, run) -> None:
        from methods.core.generation import SamplingParams
        from methods.iterative_dpo import check_dpo_trainer

        for key, options in (("principles", PRINCIPLE_MODES), ("generator_loss", (*FORMS, "none")),
                             ("policy_loss", POLICY_LOSSES)):
            if getattr(self, key) not in options:
                raise ValueError(f"method.{key}={getattr(self, key)!r}: choose one of {list(options)}")
        book = self.book()
        if not 1 <= self.n_features <= len(book.features):
            raise ValueError(f"method.n_features={self.n_features}: between 1 and {len(book.features)}")
        if self.principles == "written":
            Writer.load()
            if self.writer_model and not (Path(self.writer_model).expanduser() / "config.json").exists():
                raise ValueError(f"method.writer_model={self.writer_model}: no config.json there (a local model directory)")
        if not 0 <= self.v1_alpha <= 1 or self.gamma < 0 or self.v1_g < 0:
            raise ValueError("method.v1_alpha must be in [0, 1], method.gamma and method.v1_g >= 0")
        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        pools = IterativeDPO.n_pools(run)
        if not 1 <= self.generator_pool <= max(pools, 0):
            raise ValueError(f"method.generator_pool={self.generator_pool}: data.n_unlabelled gives {pools} pool(s)")
        check_dpo_trainer(self.policy_trainer, self.name)
        if self.generator_loss != "none":
            from methods.core.trainers.dpo import DPOTrainerSpec

            if not isinstance(self.generator_trainer, DPOTrainerSpec):
                raise ValueError("method.generator_trainer: a conf/trainer/dpo* entry (trainers.generator)")
            self.generator_trainer.validate("trainers.generator")

    def book(self) -> Principles:
        return Principles.load(self.principles_file) if self.principles_file else Principles.load()

    # ---- the method ---------------------------------------------------------------------------
    def __call__(self, run) -> MethodResult:
        from methods.core.io import read_json

        gen_items = run.data.unlabelled(self.generator_pool)
        ds = run.stage("gen_samples", lambda d: self._sample(run, d, gen_items, run.base_model_path, with_yo=True))
        dp = run.stage("gen_pairs", lambda d: self._pairs(run, d, gen_items, ds, run.base_model_path))
        before = read_json(dp / "stats.json")
        metrics = {"generator_loss": self.generator_loss, "principles": self.principles, **prefixed("before", before)}

        generator = run.base_model_path
        if self.generator_loss != "none":
            rows = self._generator_rows(run, dp)
            if not rows:
                raise ValueError(f"method=sso: every one of the {before['n_rows']} generator queries was dropped "
                                 f"({before}); no generator to train (more queries, or other sampling settings)")
            v1 = self.generator_loss == "v1"
            generator = self.generator_trainer.train(run, rows, "gen_train",
                                                     trainer_cls=generator_trainer(0.0 if v1 else self.gamma),
                                                     **({"beta": self.v1_beta} if v1 else {}))
            metrics["n_generator_rows"] = len(rows)

        policy_items = [it for i in range(1, IterativeDPO.n_pools(run) + 1) for it in run.data.unlabelled(i)]
        # the baseline (no generator) samples its policy pairs from the SFT model itself
        sd = run.stage("policy_samples", lambda d: self._sample(run, d, policy_items, generator, with_yo=False))
        gen_ids = {it["id"] for it in gen_items}
        pd = run.stage("policy_pairs", lambda d: self._pairs(run, d, policy_items, sd, generator, subset=gen_ids))
        after = read_json(pd / "stats.json")
        metrics.update(prefixed("after", after))
        pairs = [{"id": r["id"], "prompt": r["x"], "chosen": r["y_plus"], "rejected": r["y_minus"]}
                 for r in _rows(pd / "rows.jsonl")]
        if not pairs:
            raise ValueError(f"method=sso: every one of the {after['n_rows']} policy queries' pairs was dropped "
                             f"({after}): no policy pair")
        cls = None
        if self.policy_loss == "ipo":
            from methods.sso.loss import IPOTrainer

            cls = IPOTrainer
        policy = self.policy_trainer.train(run, pairs, "policy_train", trainer_cls=cls)
        metrics.update({"n_policy_pairs": len(pairs), "n_policy_queries": len(policy_items),
                        "n_generator_queries": len(gen_items)})
        return MethodResult(Policy(policy), metrics, labelled_pairs=0)

    # ---- principles and samples ---------------------------------------------------------------
    def _principles(self, run, items, stage: str) -> list[dict]:
        """p⁺, p⁻ per query: drawn features, or (written) the writer model's, when they parse and name no
        check of the gold judge (else the drawn ones: `source` says which)."""
        from methods.sso.guard import leaks

        book = self.book()
        rng = random.Random(f"sso:{run.data_seed}:{stage}")
        drawn = [book.draw(rng, self.n_features) for _ in items]
        out = [{"p_plus": p, "p_minus": m, "features": f, "source": "features"} for p, m, f in drawn]
        if self.principles == "written":
            from methods.core.generation import SamplingParams

            writer = Writer.load()
            replies = run.engine(self.writer_model or run.base_model_path).generate(
                [writer.chat(it["instruction"]) for it in items], SamplingParams(n=1, temperature=0.0, max_new_tokens=96))
            for o, cs in zip(out, replies):
                parsed = parse_written(cs[0].text)
                if parsed is None:
                    o["source"] = "features (unparsed)"
                elif leaks(" ".join(parsed)):
                    o["source"] = "features (leak)"
                else:
                    o.update(p_plus=parsed[0], p_minus=parsed[1], features=[], source="written")
        return out

    def _sample(self, run, d: Path, items, model: str, with_yo: bool) -> None:
        from methods.core.generation import SamplingParams
        from methods.core.io import atomic_write_jsonl

        principles = self._principles(run, items, d.name)
        xs = [it["instruction"] for it in items]
        prompts = [steer(x, p["p_plus"]) for x, p in zip(xs, principles)] + \
                  [steer(x, p["p_minus"]) for x, p in zip(xs, principles)] + (list(xs) if with_yo else [])
        params = SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p,
                                max_new_tokens=self.max_new_tokens, seed=run.cfg.seed)
        outs = [cs[0].text for cs in run.engine(model).generate(prompts, params)]
        n = len(items)
        rows = []
        for k, (it, p) in enumerate(zip(items, principles)):
            rows.append({"id": it["id"], "x": xs[k], **p, "x_plus": prompts[k], "x_minus": prompts[n + k],
                         "y_plus": outs[k], "y_minus": outs[n + k], **({"y_o": outs[2 * n + k]} if with_yo else {})})
        atomic_write_jsonl(d / "samples.jsonl", rows)

    def _pairs(self, run, d: Path, items, d_samples: Path, model: str, subset: set | None = None) -> None:
        """The kept rows of `d_samples` (drop rules, optional ordering filter) and their measures; with
        `subset`, the accuracy on those queries' rows as well (the generator pool's, for before/after)."""
        from methods.core.io import atomic_write_json, atomic_write_jsonl

        rows = _rows(d_samples / "samples.jsonl")
        kept, reasons = drop_rows(rows)
        stats = {"n_rows": len(rows), "n_kept": len(kept), **{f"n_dropped_{k}": v for k, v in reasons.items()},
                 "written_share": sum(r["source"] == "written" for r in rows) / len(rows) if rows else None}
        if self.logprob_filter and kept:
            keep = self._ordered(run, kept, model)
            stats["n_dropped_order"] = len(kept) - sum(keep)
            kept = [r for r, k in zip(kept, keep) if k]
        stats.update(self._measure(run, kept, items, model))
        if subset is not None:
            sub = self._accuracy(run, [r for r in kept if r["id"] in subset], items)
            stats.update({"genpool_principle_pair_accuracy": sub["principle_pair_accuracy"],
                          "genpool_n_gold_decided": sub["n_gold_decided"]})
        atomic_write_jsonl(d / "rows.jsonl", kept)
        atomic_write_json(d / "stats.json", stats)

    def _logprobs(self, run, model: str, prompts, responses, spec=None):
        from methods.core.labelers import logprobs

        spec = spec or (self.generator_trainer if self.generator_loss != "none" else self.policy_trainer)
        return logprobs(run, model, prompts, responses, batch_size=self.score_batch_size,
                        max_length=spec.arg("max_length"))

    def _ordered(self, run, rows, model: str) -> list[bool]:
        """Each answer likelier (per token) under its own principle than under the other one."""
        xp, xm = [r["x_plus"] for r in rows], [r["x_minus"] for r in rows]
        yp, ym = [r["y_plus"] for r in rows], [r["y_minus"] for r in rows]
        lp = self._logprobs(run, model, xp + xm + xp + xm, yp + yp + ym + ym).mean
        n = len(rows)
        return [lp[k] > lp[n + k] and lp[3 * n + k] > lp[2 * n + k] for k in range(n)]

    @staticmethod
    def _accuracy(run, rows, items) -> dict:
        from methods.core.labelers import gold_agreement

        out = gold_agreement([{"id": r["id"], "chosen": r["y_plus"], "rejected": r["y_minus"]} for r in rows],
                             run.gold, {it["id"]: it for it in items})
        return {"principle_pair_accuracy": out["self_label_accuracy"], "gold_tie_share": out["gold_tie_share"],
                "n_gold_decided": out["n_gold_decided"]}

    def _measure(self, run, rows, items, model: str) -> dict:
        """Gold accuracy of the pairs (y⁺ above y⁻ on the plain query) and how on-policy they are: the
        mean per-token log π(y|x) of y⁺ and y⁻ without the principle under the SFT model (where the
        policy starts) and, when another model sampled them, under that one (`*_sampler`)."""
        out = self._accuracy(run, rows, items)
        if rows:
            xs, ys = [r["x"] for r in rows], [r["y_plus"] for r in rows] + [r["y_minus"] for r in rows]
            n = len(rows)
            for suffix, path in (("", run.base_model_path), ("_sampler", model)):
                if suffix and path == run.base_model_path:
                    continue
                lp = self._logprobs(run, path, xs + xs, ys, spec=self.policy_trainer).mean
                out.update({f"logp_plus{suffix}": sum(lp[:n]) / n, f"logp_minus{suffix}": sum(lp[n:]) / n})
        return out

    # ---- the generator's rows -----------------------------------------------------------------
    def _generator_rows(self, run, dp: Path) -> list[dict]:
        rows = _rows(dp / "rows.jsonl")
        weights = [None] * len(rows)
        if self.generator_loss == "v1":  # W per query, under the generator's initial model
            from methods.sso.loss import weight_v1

            xs = [r["x"] for r in rows]
            lp = self._logprobs(run, run.base_model_path, xs + xs,
                                [r["y_plus"] for r in rows] + [r["y_minus"] for r in rows], spec=self.generator_trainer).mean
            n = len(rows)
            weights = [weight_v1(lp[k], lp[n + k], self.v1_alpha) for k in range(n)]
        return [g for r, w in zip(rows, weights) for g in generator_rows(r, self.generator_loss, self.v1_g, w)]


def drop_rows(rows: list[dict]) -> tuple[list[dict], dict]:
    """SSO's drop rules: y⁺ = y⁻ (no preference), y⁺ = y_o or y⁻ = y_o (the principle changed nothing);
    compared after stripping whitespace. Returns the kept rows and the count per reason."""
    reasons = {"same": 0, "unsteered": 0}
    kept = []
    for r in rows:
        yp, ym, yo = r["y_plus"].strip(), r["y_minus"].strip(), r.get("y_o")
        if yp == ym:
            reasons["same"] += 1
        elif yo is not None and yo.strip() in (yp, ym):
            reasons["unsteered"] += 1
        else:
            kept.append(r)
    return kept, reasons


def _rows(path: Path) -> list[dict]:
    from methods.core.io import read_rows

    return read_rows(path, ROW_FIELDS)
