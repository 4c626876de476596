"""Win rates as AlpacaEval 2.0 reports them: raw win rate and length-controlled (LC) win rate.

Annotations use alpaca_eval's format: rows with `instruction, output_1` (the reference/baseline),
`output_2` (the model), `generator_1, generator_2, preference`; preference in [1, 2], 2 = the model's
output preferred, 1.5 (or the legacy 0) = tie. NaN/None preferences are dropped and counted.

- Raw win rate and its standard error come from `alpaca_eval.metrics.get_winrate` (ties count half).
- LC win rate uses alpaca_eval's GLM (`length_controlled_v1`): the preference of each row is
  modelled as  logit p = w_len * tanh(std_delta_len) + w_diff * instruction_difficulty + b,
  with std_delta_len = (len(output_1) - len(output_2)) / std over the rows, fitted on the soft
  preferences with alpaca_eval's own `fit_LogisticRegressionCV` (L1, 5-fold grouped CV over C);
  LC = mean prediction with the length term set to zero, times 100.

  alpaca_eval regularises w_len (and w_diff) with extra rows, weight lambda/2 = 0.1 each and no
  intercept: the annotations of two length-gamed versions of the baseline (`df_gamed.csv`, hub only).
  Which rows stand in for them depends on where the instruction difficulty comes from (`lc_mode`):
    official_difficulty  the table from alpaca_eval (a local copy of `df_gamed.csv` or
                         `instruction_difficulty.csv`); the gamed rows are used when present;
    pooled_difficulty    `estimate_difficulty` on a pool of annotations; the stand-in rows are an
                         equal-quality model at this model's length differences, labelled with the
                         pool's shared length slope (same lambda);
    no_difficulty        no instruction term and no regularisation: alpaca_eval's
                         `length_controlled_minimal` GLM (tanh(std_delta_len) + intercept).
  When the GLM cannot be fitted (fewer rows than CV folds, a constant non-zero length difference,
  a solver error, or the L1 fit shrinking every weight to zero while the raw win rate is not 50)
  `lc_win_rate` is NaN and `lc_note` says why; a baseline judged against itself gets 50 by
  construction, as in alpaca_eval.

  Measured offline against alpaca_eval's leaderboard (analysis/leaderboard_check.py, 40 models of
  ../shared/data/alpaca_eval/annotations_gpt4_turbo): raw win rate and SE exact; LC with the pooled
  difficulty of those models: mean abs error 0.57, max 3.4 points (0.71 / 3.2 when each model is
  left out of its own pool); without the difficulty term: mean abs error 6.3.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

LAMBDA = 0.2  # alpaca_eval length_controlled_v1: regularize_to_baseline_lambda
N_SPLITS = 5  # alpaca_eval length_controlled_v1: CV folds
EPS = 1e-6  # soft labels are clipped to [EPS, 1 - EPS] for the GLM (see length_controlled)
RIDGE = 0.3  # prior precision on each instruction term of the joint pool fit (see estimate_difficulty)
LEADERBOARD = "leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
HUB_REPO = "tatsu-lab/alpaca_eval"
HUB_FILES = ("df_gamed.csv", "instruction_difficulty.csv")  # the first also carries the gamed rows
LC_MODES = ("official_difficulty", "pooled_difficulty", "no_difficulty")


def read_annotations(path: str | Path):
    """An alpaca_eval annotations file (.json or .json.gz, a list of rows) as a DataFrame."""
    import pandas as pd

    from methods.core.io import read_json

    return pd.DataFrame(read_json(path))


def leaderboard_path() -> Path:
    """alpaca_eval's AlpacaEval 2.0 leaderboard (weighted_alpaca_eval_gpt4_turbo) shipped in the package."""
    import importlib.util

    spec = importlib.util.find_spec("alpaca_eval")  # finds the package without importing it
    return Path(list(spec.submodule_search_locations)[0]) / LEADERBOARD


def to_frame(annotations):
    """A copy of `annotations` as a DataFrame with a float `preference` (legacy 0 -> 1.5; unparsable -> NaN).

    Raises ValueError for a preference outside [1, 2]: that is a judge bug, not a missing label.
    """
    import pandas as pd

    df = pd.DataFrame(list(annotations)) if not isinstance(annotations, pd.DataFrame) else annotations.copy()
    missing = {"output_1", "output_2", "preference"} - set(df.columns)
    if missing and len(df) == 0:
        df = df.reindex(columns=[*df.columns, *sorted(missing)])
    elif missing:
        raise ValueError(f"annotations lack column(s) {sorted(missing)}")
    pref = pd.to_numeric(df["preference"], errors="coerce").astype(float).replace({0.0: 1.5})
    bad = pref.notna() & ((pref < 1) | (pref > 2))
    if bad.any():
        raise ValueError(f"preference outside [1, 2] in row(s) {list(df.index[bad][:5])}: "
                         f"{list(pref[bad][:5])}")
    df["preference"] = pref
    return df


def summarize(annotations, instruction_difficulty=None) -> dict[str, Any]:
    """AlpacaEval metrics of one model's annotations against one reference.

    Returns win_rate (percent, ties half) and standard_error (SEM of the per-row scores, percent),
    both from `alpaca_eval.metrics.get_winrate`; n_wins, n_wins_base, n_draws, n_total (rows kept),
    n_dropped (NaN preferences), avg_length (mean characters of output_2 over all rows; the
    leaderboard truncates the mean over model_outputs.json to an int), lc_win_rate, lc_standard_error,
    lc_mode, lc_regularization and lc_note (None, or why lc_win_rate is NaN / what was filled in).

    instruction_difficulty: None fits the GLM without the instruction-difficulty term (and without
    regularisation rows, mode "no_difficulty"). Otherwise a Series indexed by instruction text, or by
    integer index (matched to an `index` column, else to row position, as alpaca_eval does). Its
    `attrs["source"]` is "pooled" (from `estimate_difficulty`, with `attrs["length_slope"]`) or
    "official" (the default for a plain Series; `attrs["gamed"]` holds alpaca_eval's gamed rows).

    Worked example: preferences [2, 2, 1.5, 1] score [1, 1, 0.5, 0] -> win_rate 62.5,
    standard_error = std([1, 1, .5, 0], ddof=1) / sqrt(4) * 100 = 47.87 / 2 = 23.94.
    """
    df = to_frame(annotations)
    get_winrate = _alpaca_eval_metrics().get_winrate
    avg_length = float(df["output_2"].fillna("").astype(str).str.len().mean()) if len(df) else math.nan
    kept = df[df["preference"].notna()].reset_index(drop=True)
    if len(kept):
        raw = get_winrate(kept)
    else:
        raw = dict(win_rate=math.nan, standard_error=math.nan, n_wins=0, n_wins_base=0, n_draws=0, n_total=0)
    out = {
        "win_rate": _float(raw["win_rate"]),
        "standard_error": _float(raw["standard_error"]),
        "n_wins": int(raw["n_wins"]),
        "n_wins_base": int(raw["n_wins_base"]),
        "n_draws": int(raw["n_draws"]),
        "n_total": int(raw["n_total"]),
        "n_dropped": int(len(df) - len(kept)),
        "avg_length": avg_length,
    }
    out.update(length_controlled(kept, instruction_difficulty))
    return out


def length_controlled(df, instruction_difficulty=None) -> dict[str, Any]:
    """LC win rate of annotations whose preferences are all valid (see the module docstring)."""
    import numpy as np
    import pandas as pd

    res = {"lc_win_rate": math.nan, "lc_standard_error": math.nan, "lc_mode": _mode(instruction_difficulty),
           "lc_regularization": "none", "lc_note": None}
    generators = {"generator_1", "generator_2"} <= set(df.columns)
    if len(df) and generators and (df["generator_1"] == df["generator_2"]).all():
        return {**res, "lc_win_rate": 50.0, "lc_standard_error": 0.0,
                "lc_note": "baseline against itself: 50 by construction"}
    try:
        X, note = _design(df, instruction_difficulty)
    except _NoFit as e:
        return {**res, "lc_note": str(e)}
    reg, res["lc_regularization"] = _regularization_rows(instruction_difficulty, X["tanh"].to_numpy())
    weight = None
    if reg is not None:
        X = pd.concat([X, reg[X.columns]], ignore_index=True)
        weight = np.concatenate([np.ones(len(df)), np.full(len(reg), LAMBDA / 2)])
    try:
        model = _fit(X, weight)
    except (ValueError, ArithmeticError) as e:
        return {**res, "lc_note": f"GLM fit failed: {e}"}
    if not np.any(model.coef_):
        # the L1 path ends at zero: LC = 50. Believable when the raw win rate is itself near 50;
        # otherwise it is the shrinkage of too few annotations (alpaca_eval would still say 50)
        score = df["preference"] - 1
        if abs(score.mean() - 0.5) > 2 * (score.sem() if len(score) > 1 else 0):
            return {**res, "lc_note": "the cross-validated L1 fit set every weight to zero although the win "
                    "rate is not 50: too few or uninformative annotations"}
        return {**res, "lc_win_rate": 50.0, "lc_standard_error": 0.0,
                "lc_note": "every GLM weight is zero: LC = 50, as the raw win rate allows"}
    test = X.iloc[: len(df)].drop(columns="preference").assign(tanh=0.0)
    p = model.predict_proba(test)[:, 1]
    return {**res, "lc_win_rate": float(p.mean() * 100),
            "lc_standard_error": _float(pd.Series(p).sem() * 100), "lc_note": note}


class _NoFit(ValueError):
    """The GLM cannot be fitted to these annotations; the message says why."""


def _design(df, difficulty):
    """(design matrix with the soft `preference` column, note) for the model's own rows."""
    import numpy as np
    import pandas as pd

    if len(df) < N_SPLITS:
        raise _NoFit(f"too few annotations for the GLM ({len(df)} < {N_SPLITS} CV folds)")
    delta = df["output_1"].fillna("").astype(str).str.len() - df["output_2"].fillna("").astype(str).str.len()
    std = float(delta.std())
    if not std > 0 and (delta != 0).any():
        raise _NoFit("the length difference is constant and non-zero: it cannot be standardised")
    # all-equal lengths: nothing to control for, the length term is identically zero
    X = pd.DataFrame({"tanh": np.tanh(delta / std).to_numpy() if std > 0 else np.zeros(len(df)),
                      "not_gamed_baseline": 1.0})
    note = None
    if difficulty is not None:
        values = _difficulty_values(df, difficulty)
        n_missing = int(values.isna().sum())
        if n_missing == len(values):
            raise _NoFit("the instruction-difficulty table matches none of these instructions")
        if n_missing:
            note = f"{n_missing} instruction(s) not in the difficulty table: given its mean"
        X.insert(1, "instruction_difficulty", values.fillna(float(difficulty.mean())).to_numpy())
    # in [0, 1] as alpaca_eval has it; kept 1e-6 off the ends because sklearn drops zero-weight rows,
    # so a CV fold of hard 1.0 (or 2.0) preferences would lose a class and the fit degenerate
    X["preference"] = (df["preference"].to_numpy() - 1).clip(EPS, 1 - EPS)
    return X, note


def estimate_difficulty(pool_annotations: Mapping[str, Any]):
    """Per-instruction difficulty estimated offline from a pool of models' annotations.

    alpaca_eval's `instruction_difficulty` is the instruction term of one joint GLM over many models
    (their notebooks/instruction_difficulty.ipynb):
        logit p[m, i] = a_m + s_m * tanh(std_delta_len[m, i]) + d_i
    (a bias and a length slope per model, a term per instruction). This fits the same formula by
    maximum likelihood on the soft preferences (L-BFGS; theirs is sklearn's L1 LogisticRegressionCV,
    which takes minutes on ~30k rows x ~900 columns), with a Gaussian prior of precision RIDGE on
    each d_i, which also fixes the offset shared by the d_i and the a_m. Returns d (higher = the
    model wins more often there) indexed by instruction.

    A second joint fit with one shared slope s gives the judge's length sensitivity over the pool,
    `attrs["length_slope"]`: `summarize` regularises each model's length slope toward it in place of
    alpaca_eval's gamed baselines. Models judged against themselves and rows with NaN preference are
    left out. Measured against alpaca_eval's leaderboard on 40 models, see analysis/leaderboard_check.
    """
    import numpy as np
    import pandas as pd

    rows = []
    for name, ann in pool_annotations.items():
        df = to_frame(ann)
        df = df[df["preference"].notna()]
        if len(df) == 0 or ("generator_1" in df and (df["generator_1"] == df.get("generator_2")).all()):
            continue
        delta = df["output_1"].astype(str).str.len() - df["output_2"].astype(str).str.len()
        if not delta.std() > 0:
            continue
        rows.append(pd.DataFrame({"model": name, "instruction": df["instruction"].to_numpy(),
                                  "tanh": np.tanh(delta / delta.std()).to_numpy(),
                                  "y": df["preference"].to_numpy() - 1}))
    if len(rows) < 2:
        raise ValueError(f"estimate_difficulty needs at least two usable models, got {len(rows)}")
    data = pd.concat(rows, ignore_index=True)
    difficulty, _ = _joint_fit(data, shared_slope=False)
    _, slope = _joint_fit(data, shared_slope=True)
    difficulty = difficulty.rename("instruction_difficulty")
    difficulty.index.name = "instruction"
    difficulty.attrs.update(source="pooled", length_slope=float(slope), n_models=len(rows),
                            models=sorted(data["model"].unique()))
    return difficulty


def annotations_model_name(path: Path, annotations) -> str:
    """A model's name in an annotations file: its single `generator_2`, else the file name."""
    names = annotations["generator_2"].dropna().unique() if "generator_2" in annotations else []
    return str(names[0]) if len(names) == 1 else Path(path).name.removesuffix(".gz").removesuffix(".json")


def pick_difficulty(difficulty_file=None, pool_dir=None, instructions=None, log=print):
    """The instruction difficulty `summarize` takes, or None; `log` gets one line saying which.

    In order: alpaca_eval's official table (`difficulty_file`, or a copy in the local Hugging Face
    cache; never downloaded; re-keyed by `instructions`), an estimate from the annotation files in
    `pool_dir` ("pooled_difficulty"), else None ("no_difficulty").
    """
    official = load_official_difficulty(difficulty_file, instructions)
    if official is not None:
        log(f"LC: official instruction difficulty from {official.attrs['file']}")
        return official
    if pool_dir is not None and Path(pool_dir).is_dir():
        pool = {}
        for f in sorted(Path(pool_dir).glob("*.json*")):
            ann = read_annotations(f)
            pool[annotations_model_name(f, ann)] = ann
        difficulty = estimate_difficulty(pool)
        log(f"LC: instruction difficulty estimated from {difficulty.attrs['n_models']} models in {pool_dir}")
        return difficulty
    log("LC: no instruction difficulty (no official table, no annotation pool): fitted without the instruction term")
    return None


def load_official_difficulty(path: str | Path | None = None, instructions: Iterable[str] | None = None):
    """alpaca_eval's own instruction difficulty, from `path` or the local Hugging Face cache; else None.

    Never downloads. `path` is a `df_gamed.csv` (columns index, instruction_difficulty, and the gamed
    rows' preference, std_delta_len, not_gamed_baseline) or an `instruction_difficulty.csv`
    (index, instruction_difficulty). The table is keyed by position in the AlpacaEval set; pass that
    set's `instructions` in order to key it by instruction text instead (robust to missing rows).
    """
    import numpy as np
    import pandas as pd

    path = Path(path) if path is not None else _cached_hub_file()
    if path is None:
        return None
    table = pd.read_csv(path)
    if "instruction_difficulty" not in table.columns:
        series = pd.read_csv(path, index_col=0).squeeze("columns")
        table = series.rename("instruction_difficulty").reset_index()
    key = "index" if "index" in table.columns else table.columns[0]
    difficulty = table.drop_duplicates(key).set_index(key)["instruction_difficulty"].astype(float)
    if instructions is not None:
        instructions = list(instructions)
        difficulty = difficulty[difficulty.index < len(instructions)]
        difficulty.index = [instructions[int(k)] for k in difficulty.index]
    difficulty.attrs.update(source="official", file=str(path))
    if {"preference", "std_delta_len", "not_gamed_baseline"} <= set(table.columns):
        gamed = table[~table["not_gamed_baseline"].astype(bool)]
        pref = gamed["preference"].astype(float)
        pref = pref - 1 if pref.max() > 1 else pref  # alpaca_eval stores them in [0, 1]; accept [1, 2] too
        difficulty.attrs["gamed"] = pd.DataFrame({
            "tanh": np.tanh(gamed["std_delta_len"].astype(float)).to_numpy(),
            "instruction_difficulty": gamed["instruction_difficulty"].astype(float).to_numpy(),
            "not_gamed_baseline": 0.0,
            "preference": pref.to_numpy(),
        })
    return difficulty


# --- internals -------------------------------------------------------------------------------------

def _float(x) -> float:
    return math.nan if x is None else float(x)


def _mode(difficulty) -> str:
    if difficulty is None:
        return "no_difficulty"
    return {"pooled": "pooled_difficulty"}.get(difficulty.attrs.get("source"), "official_difficulty")


def _difficulty_values(df, difficulty):
    """The difficulty of each row: by instruction text, or by integer index / row position."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(difficulty.index):
        if "instruction" not in df.columns:
            return pd.Series(float("nan"), index=range(len(df)))
        return df["instruction"].map(difficulty).astype(float).reset_index(drop=True)
    keys = df["index"] if "index" in df.columns else pd.Series(range(len(df)))
    return keys.map(difficulty).astype(float).reset_index(drop=True)


def _regularization_rows(difficulty, tanh):
    """alpaca_eval's gamed-baseline rows, or the pooled stand-in, or none; with no intercept.

    The stand-in: a model as good as the baseline, differing from it by this model's length
    differences (each sign once, like the verbose and concise gamed pair), with the preference the
    pool's shared slope predicts, on an instruction of average (zero) difficulty.
    """
    import numpy as np
    import pandas as pd

    if difficulty is None:
        return None, "none"
    if "gamed" in difficulty.attrs:
        return difficulty.attrs["gamed"], "gamed_baselines"
    if "length_slope" in difficulty.attrs:
        t = np.concatenate([tanh, -tanh])
        pref = 1 / (1 + np.exp(-difficulty.attrs["length_slope"] * t))
        rows = pd.DataFrame({"tanh": t, "instruction_difficulty": 0.0, "not_gamed_baseline": 0.0,
                             "preference": pref})
        return rows, "pool_length_slope"
    return None, "none"


def _alpaca_eval_metrics():
    """`alpaca_eval.metrics`, imported without its pkg_resources deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import alpaca_eval.metrics
        import alpaca_eval.metrics.glm_winrate  # noqa: F401

    return alpaca_eval.metrics


def _fit(X, weight):
    """alpaca_eval's `fit_LogisticRegressionCV`, without leaking its global sklearn setting."""
    import sklearn

    fit_LogisticRegressionCV = _alpaca_eval_metrics().glm_winrate.fit_LogisticRegressionCV
    with sklearn.config_context(), warnings.catch_warnings():
        # sklearn 1.8+ deprecates the `penalty` spelling alpaca_eval uses; the fit is unchanged
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return fit_LogisticRegressionCV(X, "preference", is_ytrue_proba=True, sample_weight=weight,
                                        n_splits=N_SPLITS)


def _joint_fit(data, shared_slope: bool):
    """Joint GLM of `estimate_difficulty`; returns (d_i as a Series over instructions, mean slope)."""
    import numpy as np
    import pandas as pd
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    mi, models = pd.factorize(data["model"])
    ii, instructions = pd.factorize(data["instruction"])
    n_m, n_i, n = len(models), len(instructions), len(data)
    si = np.zeros(n, dtype=int) if shared_slope else mi
    n_s = 1 if shared_slope else n_m
    t, y = data["tanh"].to_numpy(), data["y"].to_numpy()

    def loss(w):
        a, s, d = w[:n_m], w[n_m:n_m + n_s], w[n_m + n_s:]
        z = a[mi] + s[si] * t + d[ii]
        g = expit(z) - y
        value = -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() + 0.5 * RIDGE * d @ d
        grad = np.concatenate([np.bincount(mi, g, n_m), np.bincount(si, g * t, n_s),
                               np.bincount(ii, g, n_i) + RIDGE * d])
        return value / n, grad / n

    res = minimize(loss, np.zeros(n_m + n_s + n_i), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-15})
    return pd.Series(res.x[n_m + n_s:], index=instructions), float(res.x[n_m:n_m + n_s].mean())


def _cached_hub_file() -> Path | None:
    """alpaca_eval's difficulty table if a previous online run left it in the Hugging Face cache."""
    try:
        _alpaca_eval_metrics()
        from alpaca_eval import constants
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in HUB_FILES:
        hit = try_to_load_from_cache(HUB_REPO, name, cache_dir=constants.DEFAULT_CACHE_DIR,
                                     repo_type="dataset")
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None
