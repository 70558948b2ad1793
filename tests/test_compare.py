"""`hybridpqa compare`: its metrics are trec_eval's, its p-values ranx compare's, its files whole."""
import csv
import importlib.util
from pathlib import Path

import pytest
from ranx import Qrels, Run, compare

from HybridPQA.cli import main
from HybridPQA.data.trec import read_judgements, read_trec
from HybridPQA.evaluation.significance import _corrected, judged, ranked

REPO = Path(__file__).resolve().parents[1]


def _trec_eval_check():
    spec = importlib.util.spec_from_file_location("check_trec_eval", REPO / "scripts" / "check_trec_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_matches_trec_eval_and_ranx(tuned_scifact, small_beir, tmp_path, capsys):
    runs = [tuned_scifact / "runs" / f"test.{scorer}.trec" for scorer in ("dense", "sparse", "hybrid")]
    qrels_file = small_beir / "qrels" / "test.tsv"
    out = tmp_path / "cmp"
    report = main(["compare", *map(str, runs), f"--qrels={qrels_file}", "--metrics=map,ndcg@10,mrr",
                   "--correction=none", f"--output={out}"])
    labels = list(report)
    assert len(labels) == 3 and "p" not in report[labels[0]]["map"]
    ours_vs_trec_eval = _trec_eval_check().compare
    for label, path in zip(labels, runs):
        ours, theirs = ours_vs_trec_eval(path, read_judgements(qrels_file))
        for metric in ("map", "ndcg@10", "mrr"):
            assert abs(report[label][metric]["value"] - theirs[metric]) < 1e-4, (label, metric)
    qrels = judged(read_judgements(qrels_file))
    ranx_report = compare(Qrels(qrels.to_dict()), [Run(ranked(read_trec(p)), name=lab) for p, lab in zip(runs, labels)],
                          ["map", "ndcg@10", "mrr"], stat_test="student", make_comparable=True)
    for label in labels[1:]:
        for metric in ("map", "ndcg@10", "mrr"):
            theirs = ranx_report.comparisons[(labels[0], label)][metric]["p_value"]
            assert report[label][metric]["p"] == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    printed = capsys.readouterr().out
    assert "W/T/L map" in printed and "uncorrected" in printed
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["run"] for r in rows] == labels
    wins, ties, losses = map(int, rows[1]["W/T/L map"].split("/"))
    assert wins + ties + losses == len(qrels.qrels)
    assert (out / "per_query.png").stat().st_size > 1000 and "tabular" in (out / "compare.tex").read_text()
    with pytest.raises(SystemExit):  # an earlier comparison is replaced only with --overwrite
        main(["compare", *map(str, runs[:2]), f"--qrels={qrels_file}", f"--output={out}"])
    main(["compare", str(tuned_scifact), str(runs[0]), f"--qrels={qrels_file}", "--scorer=hybrid"])  # a run directory


def test_holm_is_step_down_and_never_below_the_raw_p():
    raw = [0.01, 0.04, 0.03, 0.5]
    holm = _corrected(raw, "holm")
    assert holm == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert _corrected(raw, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])


@pytest.mark.parametrize("args, message", [
    (["a.trec"], "at least two runs"),
    (["nope.trec", "nope2.trec"], "nope.trec: no such run file"),
    (["a.trec", "b.trec", "--metrics=ndgc@10"], "unknown metric 'ndgc@10'"),
    (["a.trec", "b.trec", "--correction=fdr"], "--correction=fdr: use one of"),
])
def test_bad_compare_arguments_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    for name in ("a.trec", "b.trec"):
        (tmp_path / name).write_text("q1 Q0 d1 1 1.0 x\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *args, "--qrels=qrels.tsv"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
