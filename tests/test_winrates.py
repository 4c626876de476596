"""Win rates: alpaca_eval's leaderboard recomputed offline, hand-checked small cases, the CLI, paper_results."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO.parent / "shared" / "data" / "alpaca_eval" / "annotations_gpt4_turbo"


def rows(prefs, len_1=None, len_2=None, model="m"):
    """Annotations with the given preferences; output lengths default to a spread around each other."""
    n = len(prefs)
    len_1 = len_1 or [50 + 7 * (i % 5) for i in range(n)]
    len_2 = len_2 or [40 + 11 * (i % 7) for i in range(n)]
    return [
        {"instruction": f"q{i}", "output_1": "a" * l1, "output_2": "b" * l2,
         "generator_1": "ref", "generator_2": model, "preference": p}
        for i, (p, l1, l2) in enumerate(zip(prefs, len_1, len_2))
    ]


def shuffled(prefs, seed=0):
    """Preferences in random order: grouped CV on a periodic table gives folds of one label each."""
    import random

    prefs = list(prefs)
    random.Random(seed).shuffle(prefs)
    return prefs


def synthetic_pool(n_models=4, n_inst=60, seed=0):
    """Soft preferences drawn from alpaca_eval's joint GLM with known instruction terms."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    d = pd.Series(rng.normal(0, 1.5, n_inst), index=[f"q{i}" for i in range(n_inst)])
    pool = {}
    for k in range(n_models):
        len_1 = rng.integers(200, 800, n_inst)
        len_2 = rng.integers(100, 900, n_inst)
        delta = len_1 - len_2
        z = -1.0 + 0.5 * k - 1.7 * np.tanh(delta / delta.std()) + d.to_numpy()
        p = 1 / (1 + np.exp(-z))
        pool[f"model{k}"] = pd.DataFrame(rows(list(1 + p), list(len_1), list(len_2), model=f"model{k}"))
    return pool, d


# --- alpaca_eval's leaderboard, recomputed --------------------------------------------------------

@pytest.fixture(scope="module")
def real_pool():
    if not ANNOTATIONS.is_dir():
        pytest.skip(f"alpaca_eval annotations not found at {ANNOTATIONS} (a fresh clone has no ../shared/data)")
    from analysis.leaderboard_check import load_dir

    return load_dir(ANNOTATIONS)


@pytest.fixture(scope="module")
def real_difficulty(real_pool):
    from methods.core.winrate import estimate_difficulty

    return estimate_difficulty(real_pool)


@pytest.fixture(scope="module")
def comparison(real_pool, real_difficulty):
    from analysis.leaderboard_check import compare

    return compare(real_pool, real_difficulty)


def test_every_model_is_on_the_leaderboard(real_pool, comparison):
    assert len(real_pool) >= 40
    assert sorted(comparison["model"]) == sorted(real_pool)


def test_raw_win_rate_matches_leaderboard(comparison):
    off = comparison[comparison["wr_error"].abs() > 0.01]
    assert off.empty, off[["model", "win_rate", "lb_win_rate"]].to_string()
    assert (comparison["standard_error"] - comparison["lb_standard_error"]).abs().max() < 0.01
    # the leaderboard truncates the mean length over model_outputs.json (805 rows, ours: annotated rows)
    assert (comparison["avg_length"] - comparison["lb_avg_length"]).abs().max() < 4


def test_pooled_lc_close_to_leaderboard(comparison, real_difficulty, record_property):
    from analysis.leaderboard_check import errors

    err = errors(comparison)
    print(f"\nLC vs leaderboard over {err['n_models']} models: mean abs {err['lc_mean_abs_error']:.2f}, "
          f"max abs {err['lc_max_abs_error']:.2f}, mean {err['lc_mean_error']:+.2f}; "
          f"raw WR max abs {err['wr_max_abs_error']:.4f}; pool slope {real_difficulty.attrs['length_slope']:.2f}")
    for k, v in err.items():
        record_property(k, v)
    assert (comparison["lc_mode"] == "pooled_difficulty").all()
    assert err["lc_mean_abs_error"] < 1.0
    assert err["lc_max_abs_error"] < 5.0  # measured 3.4 (text_davinci_001, 2 annotations missing)


def test_lc_of_a_model_outside_the_pool(real_pool):
    """The difficulty of a pool without the scored model still gives a sensible LC."""
    from methods.core.winrate import estimate_difficulty, leaderboard_path, summarize
    import pandas as pd

    name = "claude-2"
    rest = {k: v for k, v in real_pool.items() if k != name}
    m = summarize(real_pool[name], estimate_difficulty(rest))
    lb = pd.read_csv(leaderboard_path(), index_col=0).loc[name, "length_controlled_winrate"]
    assert m["lc_mode"] == "pooled_difficulty" and abs(m["lc_win_rate"] - lb) < 3.0


# --- hand-checked small cases ----------------------------------------------------------------------

def test_win_rate_and_standard_error_by_hand():
    """Scores [1, 1, .5, 0]: mean .625; sample std sqrt(((.375²)·2 + .125² + .625²)/3) = .4787; SE .4787/2."""
    from methods.core.winrate import summarize

    m = summarize(rows([2.0, 2.0, 1.5, 1.0]))
    assert m["win_rate"] == pytest.approx(62.5)
    assert m["standard_error"] == pytest.approx(100 * math.sqrt((2 * 0.375**2 + 0.125**2 + 0.625**2) / 3) / 2)
    assert m["standard_error"] == pytest.approx(23.936, abs=1e-3)
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"]) == (2, 1, 1, 4)
    assert m["avg_length"] == pytest.approx(sum(40 + 11 * i for i in range(4)) / 4)


def test_ties_count_half_and_legacy_zero_is_a_tie():
    from methods.core.winrate import summarize

    assert summarize(rows([1.5] * 6))["win_rate"] == pytest.approx(50.0)
    m = summarize(rows([2.0, 0, 1.0, 1.5]))
    assert m["win_rate"] == pytest.approx(50.0) and m["n_draws"] == 2


def test_weighted_preferences_average():
    from methods.core.winrate import summarize

    assert summarize(rows([1.9, 1.1, 1.25, 1.75]))["win_rate"] == pytest.approx(50.0)
    assert summarize(rows([1.8, 1.6]))["win_rate"] == pytest.approx(70.0)


def test_nan_preferences_are_dropped_and_counted():
    import pandas as pd

    from methods.core.winrate import summarize

    m = summarize(pd.DataFrame(rows([2.0, None, float("nan"), 1.0])))
    assert (m["n_total"], m["n_dropped"]) == (2, 2)
    assert m["win_rate"] == pytest.approx(50.0)


def test_out_of_range_preference_is_an_error():
    from methods.core.winrate import summarize

    with pytest.raises(ValueError, match="outside"):
        summarize(rows([2.0, 3.0]))


def test_lc_on_all_ties_is_fifty():
    """All ties: every soft label is 0.5, so the L1 fit's best weights are all zero and LC is exactly 50,
    which the raw win rate (exactly 50, no spread) allows."""
    from methods.core.winrate import summarize

    m = summarize(rows([1.5] * 8))
    assert (m["win_rate"], m["standard_error"], m["n_draws"]) == (50.0, 0.0, 8)
    assert (m["lc_mode"], m["lc_regularization"]) == ("no_difficulty", "none")
    assert (m["lc_win_rate"], m["lc_standard_error"]) == (50.0, 0.0)
    assert m["lc_note"] == "every GLM weight is zero: LC = 50, as the raw win rate allows"


def test_lc_nan_with_a_reason_when_it_cannot_be_fitted():
    from methods.core.winrate import summarize

    few = summarize(rows([2.0, 1.0, 1.5]))
    assert math.isnan(few["lc_win_rate"]) and "too few" in few["lc_note"]
    constant = summarize(rows([2.0, 1.0] * 5, len_1=[30] * 10, len_2=[20] * 10))
    assert math.isnan(constant["lc_win_rate"]) and "constant" in constant["lc_note"]
    none = summarize([])
    assert none["n_total"] == 0 and math.isnan(none["win_rate"]) and math.isnan(none["lc_win_rate"])


def test_equal_lengths_need_no_length_control():
    from methods.core.winrate import summarize

    m = summarize(rows(shuffled([2.0, 1.0, 1.5, 2.0, 1.0, 1.0, 2.0, 1.5] * 4), len_1=[40] * 32, len_2=[40] * 32))
    assert m["lc_win_rate"] == pytest.approx(m["win_rate"], abs=1.0)


def test_baseline_against_itself_is_fifty():
    from methods.core.winrate import summarize

    ann = [{**r, "generator_2": "ref"} for r in rows([1.5] * 10)]
    assert summarize(ann)["lc_win_rate"] == 50.0


def test_longer_outputs_lose_their_edge_under_length_control():
    """The model wins exactly where it is longer: LC falls toward 50 from the raw win rate."""
    from methods.core.winrate import summarize

    len_2 = [100 + 40 * (i % 10) for i in range(60)]
    prefs = [1.9 if l2 > 250 else 1.2 for l2 in len_2]
    m = summarize(rows(prefs, len_1=[250] * 60, len_2=len_2))
    assert m["lc_win_rate"] < m["win_rate"]


def test_summary_is_json_serialisable():
    from methods.core.winrate import summarize

    json.dumps(summarize(rows([2.0, 1.0, 1.5] * 5)))


def test_estimate_difficulty_recovers_known_terms():
    import numpy as np

    from methods.core.winrate import estimate_difficulty, summarize

    pool, true = synthetic_pool()
    d = estimate_difficulty(pool)
    assert d.attrs["source"] == "pooled" and d.attrs["n_models"] == 4
    assert np.corrcoef(d.loc[true.index], true)[0, 1] > 0.95
    assert d.attrs["length_slope"] == pytest.approx(-1.7, abs=0.3)
    m = summarize(pool["model1"], d)
    assert m["lc_mode"] == "pooled_difficulty" and m["lc_regularization"] == "pool_length_slope"
    assert 0 < m["lc_win_rate"] < 100


def test_difficulty_by_index_and_missing_instructions():
    import pandas as pd

    from methods.core.winrate import summarize

    pool, true = synthetic_pool()
    ann = pool["model2"]
    by_index = pd.Series(true.to_numpy())  # keyed by row position, as alpaca_eval's own table
    assert summarize(ann, by_index)["lc_mode"] == "official_difficulty"
    partial = summarize(ann, true.iloc[:50])
    assert "10 instruction(s)" in partial["lc_note"] and not math.isnan(partial["lc_win_rate"])
    unknown = summarize(ann, pd.Series([0.1, 0.2], index=["x", "y"]))
    assert math.isnan(unknown["lc_win_rate"]) and "none of" in unknown["lc_note"]


def test_official_table_with_gamed_rows(tmp_path):
    """A df_gamed.csv-shaped file: its difficulty keys rows by position, its gamed rows regularise."""
    import pandas as pd

    from methods.core.winrate import load_official_difficulty, summarize

    pool, true = synthetic_pool()
    n = len(true)
    gamed = pd.DataFrame({"index": list(range(n)) * 2, "instruction_difficulty": list(true.to_numpy()) * 2,
                          "preference": [0.7] * n + [0.3] * n, "std_delta_len": [-1.0] * n + [1.0] * n,
                          "not_gamed_baseline": False, "model": ["v"] * n + ["c"] * n})
    gamed.to_csv(tmp_path / "df_gamed.csv", index=False)
    d = load_official_difficulty(tmp_path / "df_gamed.csv", instructions=list(true.index))
    assert d.attrs["source"] == "official" and len(d.attrs["gamed"]) == 2 * n
    assert d.loc["q3"] == pytest.approx(true.loc["q3"])
    m = summarize(pool["model0"], d)
    assert (m["lc_mode"], m["lc_regularization"]) == ("official_difficulty", "gamed_baselines")
    pd.Series(true.to_numpy(), name="instruction_difficulty").rename_axis("index").to_csv(tmp_path / "d.csv")
    plain = load_official_difficulty(tmp_path / "d.csv")
    assert "gamed" not in plain.attrs and summarize(pool["model0"], plain)["lc_regularization"] == "none"


# --- CLI ------------------------------------------------------------------------------------------

def _write(path: Path, data):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        json.dump(data, f)


def test_cli_writes_the_table(tmp_path, capsys):
    import pandas as pd

    from analysis.winrates import COLUMNS, main

    pool, _ = synthetic_pool()
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    for name, df in pool.items():
        _write(pool_dir / f"{name}.json.gz", df.to_dict("records"))
    outside = [{k: v for k, v in r.items() if k != "generator_2"} for r in rows(shuffled([2.0, 1.0, 1.5, 2.0, 1.9] * 12))]
    _write(tmp_path / "newcomer.json", [{**r, "instruction": f"q{i}"} for i, r in enumerate(outside)])
    out = tmp_path / "table.csv"
    assert main([str(pool_dir / "model0.json.gz"), str(tmp_path / "newcomer.json"), "--pool", str(pool_dir),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS == ["model", "win_rate", "standard_error", "n_wins", "n_total",
                                              "avg_length", "lc_win_rate"]
    assert list(table["model"]) == ["model0", "newcomer"]
    assert table.loc[1, "n_total"] == 60 and table.loc[1, "win_rate"] == pytest.approx(68.0)
    assert table["lc_win_rate"].notna().all()
    captured = capsys.readouterr()
    assert "estimated from 4 models" in captured.err and "newcomer" in captured.out

    assert main([str(tmp_path / "newcomer.json")]) == 0
    assert "no instruction difficulty" in capsys.readouterr().err


# --- paper_results --------------------------------------------------------------------------------

def test_paper_results_loader():
    import paper_results

    df = paper_results.load()
    assert list(df.columns) == ["paper", "arxiv", "table", "setting", "method", "metric", "value", "source", "secondary"]
    assert set(paper_results.files()) == {"spa", "sso", "ser", "pit", "self_refine"}
    assert df["source"].str.len().gt(0).all() and df["arxiv"].str.len().gt(0).all()
    assert df["secondary"].dtype == bool and df["secondary"].any() and not df["secondary"].all()
    spa = paper_results.load("spa")
    assert spa["secondary"].all()
    assert spa.query("method == 'spa' and metric == 'lc_win_rate'")["value"].max() == pytest.approx(15.39)
    sso = paper_results.load("SSO")
    row = sso.query("method == 'sso' and metric == 'win_rate' and setting.str.contains('Qwen2')")
    assert row["value"].item() == pytest.approx(45.4) and row["table"].item() == "Table 1"
    assert not sso["secondary"].any()
    with pytest.raises(KeyError):
        paper_results.load("nope")


def test_pick_difficulty_names_its_mode(tmp_path):
    """No pool: None (no_difficulty). A pool of two models' annotation files: a pooled estimate, and
    summarize then reports lc_mode pooled_difficulty."""
    import random

    from methods.core.io import atomic_write_json
    from methods.core.winrate import pick_difficulty, summarize

    assert pick_difficulty(None, tmp_path / "absent", None, log=lambda m: None) is None
    rng = random.Random(0)
    instr = [f"q{k}" for k in range(40)]
    for name, bias in (("m1", 0.3), ("m2", 0.6)):
        rows = [{"instruction": q, "output_1": "r" * rng.randint(5, 50), "output_2": "o" * rng.randint(5, 80),
                 "generator_1": "ref", "generator_2": name, "preference": 1 + (rng.random() < bias)} for q in instr]
        atomic_write_json(tmp_path / "pool" / f"{name}.json", rows)
    lines = []
    d = pick_difficulty(None, tmp_path / "pool", None, log=lines.append)
    assert d.attrs["source"] == "pooled" and d.attrs["n_models"] == 2 and set(d.index) == set(instr)
    assert "estimated from 2 models" in lines[0]
    ann = [{"instruction": q, "output_1": "r" * 20, "output_2": "o" * (10 + k), "generator_1": "ref",
            "generator_2": "x", "preference": 1 + (k % 3 == 0)} for k, q in enumerate(instr)]
    assert summarize(ann, d)["lc_mode"] == "pooled_difficulty"
    assert summarize(ann)["lc_mode"] == "no_difficulty"
