"""Self-Refine: the feedback parser, the loop on a scripted backend, validation, and one end-to-end
run on the tiny model (refine -> per-round evaluation -> final eval that `execute` keeps)."""
from __future__ import annotations

import json
import logging

import pytest

from methods.core.generation import Completion, SamplingParams
from methods.self_refine.feedback import parse_feedback, parse_score
from methods.self_refine.loop import Settings, clean_answer, self_refine
from methods.self_refine.prompts import DEFAULT_VERSION, available_versions, load_prompts

PROMPTS = load_prompts(DEFAULT_VERSION)
# released prompt files never change (a change is a new version): the sha256 each run records
PROMPT_SHA256 = {
    "v1": "823d2187e6df3b253a41f7865c329a60f0bdd58d106e681bbaec8ce1b5f65ef6",
    "v2": "fa4ad2b108b32916f6a15ce75ccd66ecce188f64c7471d5063f1891ebf249054",
}
FEEDBACK_SYSTEM = PROMPTS.spec["feedback"]["system"].strip()
REFINE_SYSTEM = PROMPTS.spec["refine"]["system"].strip()


# ---- the feedback parser ------------------------------------------------------------------------
@pytest.mark.parametrize("text, score", [
    ("Feedback: too long.\nScore: 7/10", 7.0),
    ("score = 8", 8.0),
    ("**Score:** 9", 9.0),
    ("Rating: 4 out of 5", 8.0),
    ("The score is 6.", 6.0),
    ("Score: 7.5", 7.5),
    ("Good.\n3/10", 3.0),  # a bare fraction alone on its line
    ("Good.\n**8 out of 10**", 8.0),
    ("I would give it 3/10.", None),  # a fraction inside a sentence is no score
    ("Feedback: Cut it to 3 out of 5 lines.", None),
    ("Score: 85", 8.5),  # beyond the scale without a denominator: a percentage
    ("Score: 3/10. After the fix, score: 8/10", 3.0),  # the first labelled one
    ("Score: 15/10\nScore: 6/10", 6.0),  # the first usable one
    ("Feedback: Fine.\nScore: 9/10\n\nRequest: Write a poem.\n\nAnswer:\nroses\n\nFeedback: Bad.\nScore: 2/10",
     9.0),  # a run-on invented few-shot turn is cut off (with parse_feedback)
    ("Score: 15/10", None),
    ("Score: <0 to 10>/10", None),  # the format echoed back is no score
    ("The answer misses the title.", None),
    ("", None),
])
def test_parse_score_formats(text, score):
    assert parse_feedback(text).score == score
    if "Request:" not in text:
        assert parse_score(text) == score


def test_invented_next_turn_is_cut_and_bare_fraction_in_prose_is_unparsed():
    f = parse_feedback("Feedback: Good.\nScore: 9/10\n\nRequest: Say hi.\n\nAnswer:\nhey\n\n"
                       "Feedback: No capital letter.\nScore: 2/10")
    assert (f.score, f.critique, f.text) == (9.0, "Good.", "Feedback: Good.\nScore: 9/10")
    assert "Request:" in f.raw and "Request:" not in f.text  # the refine prompt shows the cut text
    f = parse_feedback("Feedback: Cut it to 3 out of 5 lines.")
    assert (f.score, f.parsed) == (None, False)


@pytest.mark.parametrize("text, no_change", [
    ("Feedback: No changes needed.", True),
    ("Feedback: No changes needed. Score: 10/10", True),  # score on the same line
    ("Looks right; no change is required.", True),
    ("No changes needed. The tips are lowercase.", True),
    ("Feedback: The second sentence needs no change, but the first is too long. Score: 4/10", False),
    ("No changes needed except the missing date. Score: 5/10", False),
    ("No changes needed, apart from the title.", False),
    ("No changes needed. However, it is over the word limit.", False),
    ("The title is fine. The second paragraph needs no changes.", False),  # not the opening statement
])
def test_no_change_only_when_unqualified_opening_statement(text, no_change):
    assert parse_feedback(text).no_change is no_change


def test_parse_feedback_fields():
    f = parse_feedback("Feedback: Add a title in <<double brackets>>.\nScore: 4/10")
    assert (f.score, f.no_change, f.parsed) == (4.0, False, True)
    assert f.critique == "Add a title in <<double brackets>>."
    assert parse_feedback("Feedback: No changes needed.\nScore: 10/10").no_change
    assert parse_feedback("Looks right; no change is required.").no_change
    assert parse_feedback("nothing to fix here").parsed
    assert not parse_feedback("There are no bullets, and no title.").no_change  # "no" alone is not "no change"
    missing = parse_feedback("It should be shorter.")
    assert (missing.score, missing.no_change, missing.parsed) == (None, False, False)
    assert missing.critique == "It should be shorter."
    assert not parse_feedback(None).parsed  # a backend's None text does not crash it


def test_clean_answer_strips_copied_labels():
    assert clean_answer("Attempt 2:\nhello") == "hello"
    assert clean_answer("Improved answer: hi there") == "hi there"
    assert clean_answer("Answers vary by season.") == "Answers vary by season."


# ---- prompts ------------------------------------------------------------------------------------
def test_prompt_versions_and_rendering():
    assert DEFAULT_VERSION == "v2" and set(PROMPT_SHA256) <= set(available_versions())
    assert PROMPTS.describe() == {"version": "v2", "file": "v2.yaml", "sha256": PROMPT_SHA256["v2"]}
    fb = PROMPTS.feedback_messages("Say hi.", "hello")
    assert fb[0] == {"role": "system", "content": FEEDBACK_SYSTEM}
    n_shots = len(PROMPTS.spec["feedback"]["examples"])
    assert [m["role"] for m in fb[1:]] == ["user", "assistant"] * n_shots + ["user"]
    assert "Say hi." in fb[-1]["content"] and "hello" in fb[-1]["content"]
    with pytest.raises(ValueError, match="available"):
        load_prompts("v999")


def test_released_prompt_versions_are_unchanged_and_still_load():
    """v1 stays selectable (method.prompt_version=v1) for reproducing old runs; v2 changed only its examples."""
    sets = {v: load_prompts(v) for v in PROMPT_SHA256}
    assert {v: ps.sha256 for v, ps in sets.items()} == PROMPT_SHA256
    v1, v2 = sets["v1"].spec, sets["v2"].spec
    for part in ("feedback", "refine"):
        assert {k: x for k, x in v1[part].items() if k != "examples"} == \
            {k: x for k, x in v2[part].items() if k != "examples"}
        assert len(v2[part]["examples"]) == len(v1[part]["examples"]) and v2[part]["examples"] != v1[part]["examples"]
    # the scripted backend below tells feedback from refine calls by the system message: same in every version
    assert sets["v1"].feedback_messages("q", "a")[0]["content"] == FEEDBACK_SYSTEM


def test_default_prompt_version_everywhere():
    """The dataclass default and the method's config both select DEFAULT_VERSION."""
    from methods.self_refine import SelfRefine

    assert SelfRefine().prompt_version == DEFAULT_VERSION
    assert compose(["method=self_refine"]).method.prompt_version == DEFAULT_VERSION, \
        "conf/method/self_refine.yaml: set prompt_version to methods.self_refine.prompts.DEFAULT_VERSION"


# ---- the loop on a scripted backend ---------------------------------------------------------------
def _instruction(messages) -> str:
    return messages[-1]["content"].split("\n\n")[0].removeprefix("Request: ")


class Scripted:
    """A backend that answers from scripts and records every call's kind and prompts.

    feedback[q] is the list of feedback texts for prompt q, one per round; a refinement of q in round
    t is "q-y{t+1}"; y0 is "q-y0". Any prompt beyond a script is an error (the loop asked too much).
    """

    def __init__(self, feedback: dict[str, list[str]], refine_text=None):
        self.feedback = feedback
        self.refine_text = refine_text or (lambda q, t: f"{q}-y{t + 1}")
        self.calls: list[tuple[str, list[str]]] = []
        self.refine_prompts: dict[str, list] = {}
        self.params: list[SamplingParams] = []

    def generate(self, prompts, params):
        self.params.append(params)
        if isinstance(prompts[0], str):
            self.calls.append(("answer", list(prompts)))
            return [[Completion(f"{q}-y0", 5, True)] for q in prompts]
        kind = "feedback" if prompts[0][0]["content"] == FEEDBACK_SYSTEM else "refine"
        assert kind == "feedback" or prompts[0][0]["content"] == REFINE_SYSTEM
        qs = [_instruction(p) for p in prompts]
        self.calls.append((kind, qs))
        t = sum(k == kind for k, _ in self.calls) - 1  # the round: one call per step and round
        if kind == "feedback":
            return [[Completion(self.feedback[q][t], 7, True)] for q in qs]
        for q, p in zip(qs, prompts):
            self.refine_prompts.setdefault(q, []).append(p)
        return [[Completion(self.refine_text(q, t), 6, True)] for q in qs]


LOW = "Feedback: Too long.\nScore: 3/10"


def _settings(**kw):
    return Settings(**{"max_rounds": 3, "stop_score": 9.0, **kw})


def test_stops_on_score_on_no_change_and_at_max_rounds_regenerating_only_active_prompts():
    fb = {
        "a": ["Feedback: Good.\nScore: 9/10"],  # stops on its score at round 0
        "b": [LOW, "Feedback: No changes needed."],  # stops on "no change" at round 1
        "c": [LOW, LOW, LOW],  # refined until max_rounds
    }
    backend = Scripted(fb)
    res = self_refine(backend, ["a", "b", "c"], PROMPTS, _settings())
    assert backend.calls == [
        ("answer", ["a", "b", "c"]),
        ("feedback", ["a", "b", "c"]), ("refine", ["b", "c"]),
        ("feedback", ["b", "c"]), ("refine", ["c"]),
        ("feedback", ["c"]), ("refine", ["c"]),
    ]  # no feedback on c's last answer: max_rounds ends it
    assert [s.stop for s in res.final] == ["score", "no_change", "max_rounds"]
    assert [s.answer for s in res.final] == ["a-y0", "b-y1", "c-y3"]
    assert [len(s) for s in res.steps] == [1, 2, 4]
    assert [r.n_answers for r in res.rounds] == [3, 2, 1, 1]
    assert [(r.n_stop_score, r.n_stop_no_change) for r in res.rounds] == [(1, 0), (0, 1), (0, 0), (0, 0)]
    assert [s.answer for s in res.answers_at(1)] == ["a-y0", "b-y1", "c-y1"]  # stopped ones keep their last
    assert res.steps[0][0].feedback.score == 9.0
    # seeds differ per round and step, so sampled rounds are not copies of each other
    assert len({p.seed for p in backend.params[1:]}) == len(backend.params) - 1


def test_low_score_overrides_no_change():
    fb = {"a": ["Feedback: No changes needed.\nScore: 4/10", "Feedback: No changes needed.\nScore: 9/10"],
          "b": ["Feedback: No changes needed.\nScore: 4/10"]}
    res = self_refine(Scripted(fb), ["a"], PROMPTS, _settings())
    assert len(res.steps[0]) == 2 and res.final[0].stop == "no_change"  # 4 < 9: refined once, then stops
    res = self_refine(Scripted(fb), ["b"], PROMPTS, _settings(max_rounds=1, stop_score=None))
    assert res.final[0].stop == "no_change" and len(res.steps[0]) == 1  # no threshold: "no change" stops it


def test_refine_sees_the_request_and_every_earlier_answer_and_critique_in_order():
    fb = {"c": ["Feedback: First fix.\nScore: 2/10", "Feedback: Second fix.\nScore: 5/10", LOW]}
    backend = Scripted(fb)
    self_refine(backend, ["c"], PROMPTS, _settings())
    last = backend.refine_prompts["c"][-1][-1]["content"]  # round 2's refine prompt, user turn
    order = ["Request: c", "Attempt 1:", "c-y0", "First fix.", "Attempt 2:", "c-y1", "Second fix.",
             "Attempt 3:", "c-y2", "Too long."]
    pos = [last.index(s) for s in order]
    assert pos == sorted(pos)
    assert "Attempt 4" not in last


def test_unparsable_feedback_is_counted_logged_and_refined_with_raw_text(caplog):
    fb = {"a": ["I am not sure what to say.", "Score: 10/10"], "b": ["Feedback: ok\nScore: 9/10"]}
    backend = Scripted(fb)
    with caplog.at_level(logging.WARNING, logger="selfalign"):
        res = self_refine(backend, ["a", "b"], PROMPTS, _settings())
    assert res.rounds[0].n_unparsable == 1 and res.rounds[1].n_unparsable == 0
    assert "unparsable" in caplog.text and "not sure" in caplog.text
    assert not res.steps[0][0].feedback.parsed
    assert "I am not sure what to say." in backend.refine_prompts["a"][0][-1]["content"]
    assert [s.stop for s in res.final] == ["score", "score"]


def test_empty_refinement_keeps_previous_answer_and_given_y0_skips_generation():
    backend = Scripted({"a": [LOW, LOW]}, refine_text=lambda q, t: "  ")
    res = self_refine(backend, ["a"], PROMPTS, _settings(max_rounds=1), initial=[Completion("mine", 3, True)])
    assert [k for k, _ in backend.calls] == ["feedback", "refine"]  # y0 was given
    assert res.final[0].answer == "mine" and res.final[0].empty and res.rounds[1].n_empty == 1


def test_zero_rounds_and_no_stop_score():
    backend = Scripted({})
    res = self_refine(backend, ["a"], PROMPTS, _settings(max_rounds=0))
    assert [k for k, _ in backend.calls] == ["answer"] and res.final[0].stop == "max_rounds"
    backend = Scripted({"a": ["Score: 10/10", LOW]})
    res = self_refine(backend, ["a"], PROMPTS, _settings(max_rounds=2, stop_score=None))
    assert len(res.steps[0]) == 3  # a perfect score does not stop it when stop_score is null


# ---- the plugin in the suite ------------------------------------------------------------------------
def compose(overrides):
    from hydra import compose as _compose
    from hydra import initialize_config_module

    import experiments.run  # noqa: F401  (registers the config resolvers)

    with initialize_config_module("conf", version_base="1.3"):
        return _compose("config", overrides=overrides)


TINY = ["model=tiny_llama", "method=self_refine", "data.n_eval=4", "eval.max_new_tokens=8", "method.max_rounds=2",
        "method.feedback.max_new_tokens=8", "generation.progress=false", "threads=1"]


@pytest.mark.parametrize("override, message", [
    ("method.max_rounds=-1", "method.max_rounds"),
    ("method.stop_score=11", "method.stop_score"),
    ("method.prompt_version=v0", "available"),
    ("method.feedback.temperature=-1", "method.feedback"),
    ("+method.refine.bogus=1", "method.refine"),
])
def test_bad_settings_fail_in_validation(override, message, tmp_path):
    from experiments.pipeline import build_run

    with pytest.raises(ValueError, match=message):
        build_run(compose([*TINY, override, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]))
    assert not (tmp_path / "cache" / "models").exists()


def test_api_preset_needs_its_key(tmp_path, monkeypatch):
    from experiments.pipeline import build_run

    overrides = ["experiment=self_refine_api", f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_run(compose(overrides))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    run = build_run(compose(overrides))
    assert type(run.method.backend).__name__ == "OpenAIChat"


def _read(path):
    return json.loads(path.read_text())


def test_end_to_end_on_tiny_model(tmp_path):
    from experiments.pipeline import build_run, execute

    cfg = compose([*TINY, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"])
    metrics = execute(build_run(cfg))
    d = tmp_path / "run"
    version = cfg.method.prompt_version
    rows = [json.loads(line) for line in (d / "refine" / "rounds.jsonl").read_text().splitlines()]
    assert {r["prompt_version"] for r in rows} == {version} and len(rows) == 4 * 3  # a random model never stops early
    assert _read(d / "refine" / "prompts.json")["sha256"] == load_prompts(version).sha256
    outs, anns, m = _read(d / "model_outputs.json"), _read(d / "annotations.json"), _read(d / "metrics.json")
    finals = {r["id"]: r["answer"] for r in rows if r["round"] == 2}
    assert [o["output"] for o in outs] == [finals[o["id"]] for o in outs]  # the refined answers were evaluated
    assert [a["output_2"] for a in anns] == [o["output"] for o in outs] and outs[0]["generator"] == "self_refine"
    assert m["prompt_version"] == version and m["prompt_sha256"] == load_prompts(version).sha256
    assert m["win_rate"] == metrics["win_rate"]
    its = m["iterations"]
    assert [it["iteration"] for it in its] == [0, 1, 2]
    assert its[0]["win_rate"] == 50.0  # y0 is the baseline's own answer
    assert its[-1]["win_rate"] == m["win_rate"]
    for it in its:
        assert {"win_rate", "standard_error", "lc_win_rate", "judge_score", "avg_length", "still_refining",
                "n_unparsable"} <= set(it)
    assert [it["still_refining"] for it in its] == [1.0, 1.0, 1.0]
    assert its[0]["n_unparsable"] == 4 and its[2]["n_unparsable"] == 0  # no feedback on the last round
    for r in range(2):  # the last round's policy is the final one: evaluated once, in eval/
        assert (d / f"round{r}_eval" / "annotations.json").exists()
    assert not (d / "round2_eval").exists() and its[-1]["annotations_file"] == "eval/annotations.json"


def test_end_to_end_with_scripted_backend_stops_and_reports_rounds(tmp_path):
    """The backend path (y0 from the backend), early stops, and per-round still_refining in metrics.json."""
    from experiments.pipeline import build_run, execute

    run = build_run(compose([*TINY, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]))
    qs = [it["instruction"] for it in run.data.eval()[:4]]
    fb = {qs[0]: ["Feedback: No changes needed.\nScore: 10/10"], qs[1]: ["Score: 9/10"],
          qs[2]: [LOW, "Score: 9.5/10"], qs[3]: [LOW, "hmm"]}
    run.method.backend = Scripted({q.split("\n\n")[0]: v for q, v in fb.items()})
    m = execute(run)
    assert [it["still_refining"] for it in m["iterations"]] == [1.0, 0.5, 0.25]
    assert [it["n_unparsable"] for it in m["iterations"]] == [0, 1, 0]
    assert m["stop_reasons"] == {"no_change": 1, "score": 2, "max_rounds": 1}
    outs = _read(tmp_path / "run" / "model_outputs.json")
    assert [o["output"] for o in outs] == [f"{qs[0]}-y0", f"{qs[1]}-y0", f"{qs[2]}-y1", f"{qs[3]}-y2"]


def test_api_backend_keeps_prompt_order_and_maps_choices(monkeypatch):
    from types import SimpleNamespace as NS

    from methods.self_refine.api import OpenAIChat

    sent = []

    def create(**kw):
        sent.append(kw)
        text = kw["messages"][-1]["content"].upper()
        return NS(choices=[NS(message=NS(content=f" {text} "), finish_reason="stop")], usage=NS(completion_tokens=4))

    backend = OpenAIChat(model="m", max_workers=3, max_tokens_param="max_completion_tokens")
    monkeypatch.setattr(backend, "_client", lambda: NS(chat=NS(completions=NS(create=create))))
    outs = backend.generate(["a", [{"role": "user", "content": "b"}], "c"], SamplingParams(max_new_tokens=5, seed=3))
    assert [o[0].text for o in outs] == ["A", "B", "C"] and outs[0][0].n_tokens == 4 and outs[0][0].finished
    assert {kw["max_completion_tokens"] for kw in sent} == {5} and {kw["seed"] for kw in sent} == {3}
