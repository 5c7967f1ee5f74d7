"""The depth report's table and sentences, on fabricated rows whose answers are known."""
import pytest

from initlab.experiments import depth_report


def runs(table, lr=0.01):
    """{(init, depth): [test_acc per seed, None = diverged]} -> runs.csv rows."""
    rows = []
    for (init, d), accs in table.items():
        for seed, acc in enumerate(accs):
            rows.append({"depth": d, "lr": lr, "init": init, "seed": seed,
                         "test_acc": 0.098 if acc is None else acc, "diverged": acc is None,
                         "diverged_step": 25 + seed if acc is None else None})
    return rows


def probe_rows(ratios, layers=4):
    """Forward std per hidden layer shrinking/growing geometrically to the given last/first ratio."""
    rows = []
    for init, ratio in ratios.items():
        for k in range(1, layers + 1):
            std = 0.0 if ratio == 0 else ratio ** ((k - 1) / (layers - 1))
            rows.append({"init": init, "activation": "relu", "seed": 0, "layer": f"fc{k}", "hidden": True,
                         "forward_std": std, "predicted_std": 1.0})
    return rows


CFG = {"inits": ["xavier", "kaiming", "normal"], "lrs": [0.01], "depths": [5, 30]}
TABLE = {("xavier", 5): [0.93, 0.92], ("xavier", 30): [0.1135, 0.1135],
         ("kaiming", 5): [0.93, 0.94], ("kaiming", 30): [0.91, 0.90],
         ("normal", 5): [0.92, 0.93], ("normal", 30): [None, None]}


def test_the_table_names_diverged_cells_and_stalled_ones():
    header, body = depth_report.depth_table(runs(TABLE), CFG["inits"], [5, 30], 0.01)
    assert header == ["init \\ depth", "5", "30"]
    cells = {row[0]: row[1:] for row in body}
    assert cells["normal"][1] == "diverged" and cells["xavier"][1] == "n/c"
    assert cells["kaiming"][1] == "90.50 ± 0.71"


def test_sentences_say_what_each_init_did_at_the_deepest_depth():
    text = " ".join(depth_report.observations_from(runs(TABLE), [], CFG))
    assert "xavier: depth 5; kaiming: depth 30; normal: depth 5" in text
    assert "trains: kaiming (90.50 %)" in text
    assert "stalls near chance: xavier (11.35 %)" in text
    assert "diverges (loss not finite): normal (2 of 2 seeds, first at step 25)" in text
    assert "normal (9.80 %)" not in text       # a diverged init is not called stalled


@pytest.mark.parametrize("second, verdict", [([0.905, 0.895], "within"), ([0.80, 0.81], "beyond")])
def test_the_best_init_is_compared_with_the_seed_spread(second, verdict):
    table = {**TABLE, ("xavier", 30): second}
    cfg = {**CFG, "lrs": [0.01, 0.003]}
    rows = runs(table) + runs(table, lr=0.003)
    text = " ".join(depth_report.observations_from(rows, [], cfg))
    assert "best at depth is kaiming at every learning rate tried" in text
    assert f"ahead of xavier at 30 layers, {verdict} the seed spread" in text


def test_one_seed_says_it_has_no_spread():
    table = {k: v[:1] for k, v in TABLE.items()}
    text = " ".join(depth_report.observations_from(runs(table) + runs(table, 0.003), [], {**CFG, "lrs": [0.01, 0.003]}))
    assert "(1 seed: no spread)" in text and "seed spread" not in text.replace("1 seed: no spread", "")


def test_the_signal_sentence_explains_only_what_was_measured():
    rows = probe_rows({"xavier": 4.5e-5, "kaiming": 1.05, "normal": 37.7})
    text = depth_report.observations_from(runs(TABLE), rows, CFG)[-1]
    assert "shrinks geometrically with depth (xavier)" in text and "one that grows (normal)" in text
    calm = depth_report.observations_from(runs(TABLE), probe_rows({"kaiming": 1.05, "xavier": 0.9, "normal": 1.2}),
                                     CFG)[-1]
    assert "shrinks" not in calm and "grows" not in calm
    silent = depth_report.observations_from(runs(TABLE), probe_rows({"xavier": 0, "kaiming": 1.0, "normal": 1.0}),
                                       CFG)[-1]
    assert "xavier (no signal)" in silent and "no layer below the output gets a gradient" in silent
