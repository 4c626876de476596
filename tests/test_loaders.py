"""Real data loaders: UltraFeedback (self-written fixtures in both schemas), AlpacaEval, HH-RLHF,
MT-Bench (the shared files, skipped when ../shared/data is absent); malformed rows name file and row."""
from __future__ import annotations

import json

import pytest

from methods.core.io import DataError
from methods.data.alpaca_eval import AlpacaEvalSet
from methods.data.hh_rlhf import HHRLHF
from methods.data.mt_bench import MTBench
from methods.data.ultrafeedback import UltraFeedback


def argilla_row(k: int) -> dict:
    p = f"prompt {k}"
    return {"source": "x", "prompt": p, "chosen-rating": 5.0, "rejected-rating": 2.0,
            "chosen": [{"role": "user", "content": p}, {"role": "assistant", "content": f"good {k}"}],
            "rejected": [{"role": "user", "content": p}, {"role": "assistant", "content": f"bad {k}"}]}


def h4_row(k: int) -> dict:
    r = argilla_row(k)
    return {"prompt": r["prompt"], "prompt_id": f"pid{k}", "chosen": r["chosen"], "rejected": r["rejected"],
            "score_chosen": 8.0, "score_rejected": 3.0, "messages": r["chosen"]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def uf(path, **kw):
    kw.setdefault("eval_source", "tatsu-lab/alpaca_eval")
    return UltraFeedback(source=str(path), **kw)


# ---- UltraFeedback ------------------------------------------------------------------------------
def test_split_sizes_disjoint_and_deterministic(tmp_path):
    f = write_jsonl(tmp_path / "uf.jsonl", [argilla_row(k) for k in range(100)])
    d = uf(f, n_seed=5, n_unlabelled=[10, 20, 30])
    seed, pools, rest = d.seed_items(), [d.unlabelled(i) for i in (1, 2, 3)], d.held_out()
    assert [len(seed), *map(len, pools), len(rest)] == [5, 10, 20, 30, 35]
    assert len(d.labelled()) == 100 and d.n_iterations == 3
    ids = [it["id"] for part in (seed, *pools, rest) for it in part]
    assert len(set(ids)) == 100
    assert all(set(it) == {"id", "instruction"} for p in pools for it in p)  # labels dropped
    assert [it["id"] for it in seed] == [it["id"] for it in uf(f, n_seed=5, n_unlabelled=[10, 20, 30]).seed_items()]
    assert [it["id"] for it in seed] != [it["id"] for it in uf(f, seed=0, n_seed=5, n_unlabelled=[10]).seed_items()]
    pairs = d.preference_pairs(seed)
    assert all(p["chosen"].startswith("good") and p["rejected"].startswith("bad") for p in pairs)
    assert pairs[0]["chosen_score"] == 5.0 and pairs[0]["prompt"] == seed[0]["instruction"]
    assert len(uf(f, n_seed=None, seed_fraction=0.033, n_unlabelled=[]).seed_items()) == 4  # ceil(3.3)


def test_shuffle_is_datasets_shuffle_seed_42(tmp_path):
    """The order equals `datasets.Dataset.shuffle(seed=42)`, as in SPA's released code."""
    import datasets

    rows = [argilla_row(k) for k in range(50)]
    d = uf(write_jsonl(tmp_path / "uf.jsonl", rows), n_seed=50, n_unlabelled=[])
    ref = datasets.Dataset.from_list(rows).shuffle(seed=42)
    assert [it["instruction"] for it in d.seed_items()] == ref["prompt"]


def test_full_size_paper_split(tmp_path):
    """60,917 rows (argilla cleaned): seed 2000 (3.3%), pools 8K/20K/30K, 917 held out."""
    f = write_jsonl(tmp_path / "uf.jsonl", [{"prompt": f"p{k}", "chosen": "a", "rejected": "b"} for k in range(60917)])
    d = uf(f)
    sizes = [len(d.seed_items()), *(len(d.unlabelled(i)) for i in (1, 2, 3)), len(d.held_out())]
    assert sizes == [2000, 8000, 20000, 30000, 917]
    assert round(100 * 2000 / 60917, 1) == 3.3


def test_h4_schema_json_and_parquet(tmp_path):
    rows = [h4_row(k) for k in range(20)]
    (tmp_path / "h4.json").write_text(json.dumps(rows))
    d = uf(tmp_path / "h4.json", n_seed=4, n_unlabelled=[8])
    assert {it["id"] for it in d.labelled()} == {f"pid{k}" for k in range(20)}
    assert d.preference_pairs(d.seed_items())[0]["rejected_score"] == 3.0
    pd = pytest.importorskip("pandas")
    pd.DataFrame(rows).to_parquet(tmp_path / "h4.parquet")
    p = uf(tmp_path / "h4.parquet", n_seed=4, n_unlabelled=[8])
    assert p.preference_pairs(p.seed_items()) == d.preference_pairs(d.seed_items())
    assert UltraFeedback(source="HuggingFaceH4/ultrafeedback_binarized").src.split == "train_prefs"


@pytest.mark.parametrize("bad, msg", [
    ({"prompt": 3}, "field 'prompt'"),
    ({"chosen": [{"role": "user", "content": "x"}]}, "last message should be the assistant"),
    ({"rejected": None}, "field 'rejected'"),
    ({"chosen": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "every message needs"),
])
def test_malformed_ultrafeedback_row_names_file_and_row(tmp_path, bad, msg):
    rows = [argilla_row(k) for k in range(5)]
    rows[2] = {**rows[2], **bad}
    f = write_jsonl(tmp_path / "uf.jsonl", rows)
    with pytest.raises(DataError, match=rf"uf\.jsonl, row 3: .*{msg}"):
        uf(f, n_seed=1, n_unlabelled=[]).labelled()


def test_missing_field_and_bad_json(tmp_path):
    rows = [argilla_row(0), {"prompt": "p", "chosen": "a"}]
    with pytest.raises(DataError, match=r"uf\.jsonl, row 2: missing field 'rejected'"):
        uf(write_jsonl(tmp_path / "uf.jsonl", rows), n_seed=1, n_unlabelled=[]).labelled()
    (tmp_path / "b.jsonl").write_text(json.dumps(argilla_row(0)) + "\n{oops\n")
    with pytest.raises(DataError, match=r"b\.jsonl, row 2: not valid JSON"):
        uf(tmp_path / "b.jsonl", n_seed=1, n_unlabelled=[]).labelled()


def test_bad_settings_name_the_setting(tmp_path):
    f = write_jsonl(tmp_path / "uf.jsonl", [argilla_row(k) for k in range(10)])
    with pytest.raises(ValueError, match="n_unlabelled.*only 10 pairs"):
        uf(f, n_seed=2, n_unlabelled=[5, 5]).seed_items()
    with pytest.raises(ValueError, match="set exactly one"):
        uf(f, n_seed=2, seed_fraction=0.1)
    with pytest.raises(ValueError, match="seed_fraction"):
        uf(f, n_seed=None, seed_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        uf(tmp_path / "nope.jsonl", n_seed=1).validate()


def test_hub_id_validates_without_loading(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("validation must not load"))
    d = UltraFeedback(eval_local_path=None)
    d.validate()
    assert d.describe_source() == "hub:argilla/ultrafeedback-binarized-preferences-cleaned[train]"


# ---- the shared files ---------------------------------------------------------------------------
def test_alpaca_eval_set(shared_data):
    d = AlpacaEvalSet(source=str(shared_data / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json"))
    d.validate()
    items = d.eval()
    assert len(items) == 805 and len({it["id"] for it in items}) == 805
    ref = d.reference_outputs(items[:3])
    assert {r["generator"] for r in ref} == {"gpt4_1106_preview"}
    assert [r["instruction"] for r in ref] == [it["instruction"] for it in items[:3]]
    for split in ("labelled", "seed_items"):
        with pytest.raises(ValueError, match="evaluation set only"):
            getattr(d, split)()


def test_ultrafeedback_evaluates_on_shared_alpaca_eval(tmp_path, shared_data):
    f = write_jsonl(tmp_path / "uf.jsonl", [argilla_row(k) for k in range(10)])
    d = UltraFeedback(source=f, n_seed=2, n_unlabelled=[4],
                      eval_local_path=str(shared_data / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json"))
    assert len(d.eval()) == 805 and d.reference_outputs(d.eval()[:1])[0]["generator"] == "gpt4_1106_preview"


def test_alpaca_eval_relative_default_resolves_from_repo_root(shared_data, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the config's ../shared/data/... is tried from the repo root too
    d = AlpacaEvalSet(local_path="../shared/data/alpaca_eval/alpaca_eval_gpt4_baseline.json", n_eval=5)
    assert len(d.eval()) == 5


def test_hh_rlhf_shared(shared_data):
    path = str(shared_data / "hh_rlhf" / "harmless-base-test.jsonl.gz")
    with pytest.raises(DataError, match=r"harmless-base-test\.jsonl\.gz, row 1255: .*different prompts"):
        HHRLHF(source=path).labelled()
    d = HHRLHF(source=path, skip_malformed=True, seed_fraction=0.1, n_unlabelled=[500], n_eval=100)
    assert len(d.labelled()) == 2307 - 100  # every pair but the eval prompts
    eval_ids, labelled_ids = {it["id"] for it in d.eval()}, {p["id"] for p in d.labelled()}
    assert len(eval_ids) == 100 and not eval_ids & labelled_ids
    assert not eval_ids & {p["id"] for p in d.seed_items() + d.unlabelled(1)}
    assert [m.split("row ")[1].split(":")[0] for m in d.src.skipped] == ["1255", "1689", "1951", "1953", "2037"]
    assert (len(d.seed_items()), len(d.unlabelled(1)), len(d.eval())) == (231, 500, 100)
    multi = [p for p in d.labelled() if isinstance(p["instruction"], list)]
    assert multi and all(m["role"] in ("user", "assistant") for p in multi for m in p["instruction"])
    assert all(p["instruction"][-1]["role"] == "user" for p in multi)
    pair = d.preference_pairs(d.seed_items()[:1])[0]
    assert pair["chosen"] and pair["rejected"] and "Assistant:" not in pair["chosen"]


def hh_row(k: int) -> dict:
    return {"chosen": f"\n\nHuman: q{k}\n\nAssistant: good {k}", "rejected": f"\n\nHuman: q{k}\n\nAssistant: bad {k}"}


def test_hh_rlhf_labelled_never_holds_eval_items(tmp_path):
    """`method.labels=all` (DPO on all labels) must not train on the prompts `eval()` evaluates."""
    f = write_jsonl(tmp_path / "hh.jsonl", [hh_row(k) for k in range(50)])
    d = HHRLHF(source=f, n_seed=5, seed_fraction=None, n_unlabelled=[10, 10], n_eval=20)
    eval_ids = {it["id"] for it in d.eval()}
    labelled_ids = {p["id"] for p in d.labelled()}
    assert len(eval_ids) == 20 and not eval_ids & labelled_ids
    assert eval_ids | labelled_ids == {f"hh-{k:05d}" for k in range(1, 51)}  # only the eval items are left out
    train_ids = {p["id"] for p in d.seed_items() + d.unlabelled(1) + d.unlabelled(2)}
    assert not eval_ids & train_ids and train_ids <= labelled_ids
    # n_eval larger than the held-out pairs: eval() takes what is there, labelled() still excludes all of it
    d = HHRLHF(source=f, n_seed=5, seed_fraction=None, n_unlabelled=[30], n_eval=100)
    assert len(d.eval()) == 15 and len(d.labelled()) == 35
    assert not {it["id"] for it in d.eval()} & {p["id"] for p in d.labelled()}


def test_ultrafeedback_labelled_is_every_pair(tmp_path):
    # UltraFeedback evaluates on AlpacaEval, a different set: all of its own pairs stay labelled
    f = write_jsonl(tmp_path / "uf.jsonl", [argilla_row(k) for k in range(10)])
    assert len(uf(f, n_seed=2, n_unlabelled=[4]).labelled()) == 10


@pytest.mark.parametrize("tail", ["\n\nAssistant:", "\n\nAssistant: ", "\n\nAssistant:\n"])
def test_hh_rlhf_empty_final_reply_is_kept(tmp_path, tail):
    row = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q" + tail}
    f = write_jsonl(tmp_path / "hh.jsonl", [row])
    d = HHRLHF(source=f, n_seed=1, seed_fraction=None, n_eval=0)
    assert d.preference_pairs(d.labelled()) == [{"id": "hh-00001", "prompt": "q", "chosen": "good", "rejected": ""}]
    multi = {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c" + tail, "rejected": "\n\nHuman: a"
             "\n\nAssistant: b\n\nHuman: c\n\nAssistant: d"}
    d = HHRLHF(source=write_jsonl(tmp_path / "m.jsonl", [multi]), n_seed=1, seed_fraction=None, n_eval=0)
    (p,) = d.labelled()
    assert (p["chosen"], p["rejected"], [m["role"] for m in p["instruction"]]) == ("", "d", ["user", "assistant", "user"])


@pytest.mark.parametrize("chosen, rejected, msg", [
    ("\n\nHuman: hi", "\n\nHuman: hi\n\nAssistant: no", "no final Assistant turn"),
    ("\n\nHuman: hi\n\nAssistant:", "\n\nHuman: hi\n\nAssistant:x", "no final Assistant turn"),  # "Assistant:x": no turn
    ("\n\nHuman: hi\n\nAssistant: a", "\n\nHuman: ho\n\nAssistant: b", "different prompts"),
    ("hello\n\nHuman: hi\n\nAssistant: a", "\n\nHuman: hi\n\nAssistant: b", "should start with"),
])
def test_hh_rlhf_malformed_names_file_and_row(tmp_path, chosen, rejected, msg):
    ok = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"}
    f = write_jsonl(tmp_path / "hh.jsonl", [ok, {"chosen": chosen, "rejected": rejected}])
    with pytest.raises(DataError, match=rf"hh\.jsonl, row 2: .*{msg}"):
        HHRLHF(source=f).labelled()
    d = HHRLHF(source=f, n_seed=1, seed_fraction=None, n_eval=0)
    d.skip_malformed = True
    assert d.preference_pairs(d.labelled()) == [{"id": "hh-00001", "prompt": "q", "chosen": "good", "rejected": "bad"}]


def test_mt_bench_shared(shared_data):
    d = MTBench(source=str(shared_data / "mt_bench" / "question.jsonl"))
    d.validate()
    items = d.eval()
    assert len(items) == 80 and all(len(it["turns"]) == 2 for it in items)
    chat = d.second_turn(items[0], "answer one")
    assert [m["role"] for m in chat] == ["user", "assistant", "user"] and chat[2]["content"] == items[0]["turns"][1]
    assert len(MTBench(source=str(shared_data / "mt_bench" / "question.jsonl"), categories=["writing"]).eval()) == 10


def test_mt_bench_malformed(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "category": "x", "turns": ["a", "b"]},
                                           {"question_id": 2, "category": "x", "turns": []}])
    with pytest.raises(DataError, match=r"q\.jsonl, row 2: field 'turns'"):
        MTBench(source=f).eval()
