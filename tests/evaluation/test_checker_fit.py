"""The claim checker's boosted trees: fitted by scikit-learn, read back from plain node arrays."""

import json

import numpy as np
import pytest

from evaluation import checker_fit
from qa.checker import CHECK_FEATURES, CheckerModel, CheckerModelError


def _fitted(seed: int = 3):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    x = rng.random((600, len(CHECK_FEATURES)))
    x[rng.random(x.shape) < 0.05] = np.nan  # a missing value takes the side the trees learned
    y = ((np.nan_to_num(x[:, 1]) + 0.5 * np.nan_to_num(x[:, 13]) + 0.2 * rng.standard_normal(600)) > 0.9).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=7, random_state=0).fit(x, y)
    return model, x


def test_the_exported_trees_give_scikit_learns_probabilities():
    model, x = _fitted()
    exported = CheckerModel(trees=checker_fit.trees_of(model), baseline=float(np.ravel(model._baseline_prediction)[0]),
                            threshold=0.5)
    assert np.allclose(exported.probabilities(x), model.predict_proba(x)[:, 1], atol=1e-9)
    assert exported.probabilities(np.zeros((0, len(CHECK_FEATURES)))).shape == (0,)


def test_a_saved_model_reads_back_the_same_and_a_damaged_one_is_refused(tmp_path):
    model, x = _fitted()
    exported = CheckerModel(trees=checker_fit.trees_of(model), baseline=float(np.ravel(model._baseline_prediction)[0]),
                            threshold=0.61, provenance={"source": "synthetic"})
    path = tmp_path / "checker.json"
    exported.save(path)
    loaded = CheckerModel.load(path)
    assert loaded.threshold == 0.61 and loaded.provenance == {"source": "synthetic"}
    assert np.allclose(loaded.probabilities(x), exported.probabilities(x), atol=1e-6)

    saved = path.read_text()
    raw = json.loads(saved)
    raw["trees"][0]["left"][0] = 10_000  # a child outside its tree
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckerModelError, match="outside the tree"):
        CheckerModel.load(path)
    raw = json.loads(saved)
    split = raw["trees"][0]["leaf"].index(0)
    raw["trees"][0]["left"][split] = split  # a node that is its own child: a walk that never ends
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckerModelError, match="outside the tree"):
        CheckerModel.load(path)
    raw = json.loads(saved)
    raw["features"] = raw["features"][:-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckerModelError, match="refit it"):
        CheckerModel.load(path)


def test_the_shipped_model_reads_and_scores_a_pair():
    model = CheckerModel.load()
    assert model.trees and 0.0 < model.threshold < 1.0
    assert model.provenance.get("dev_out_of_fold")
    probability = model.probabilities(np.ones((1, len(CHECK_FEATURES))))
    assert 0.0 <= float(probability[0]) <= 1.0


def test_a_right_claim_teaches_the_cross_encoder_wrong_ones_bound_to_another_relation():
    import random

    from evaluation.cross_encoder_fit import phrases, swapped_claims

    sentence = "The state tree is the longleaf pine, and the state flower is the camellia."
    assert phrases(sentence) == ["state tree", "longleaf pine", "state flower", "camellia"]
    swapped = swapped_claims("Alabama's state flower is the camellia.", ["camellia"], "What is Alabama's state flower?",
                             sentence, random.Random(0))
    assert swapped == ["Alabama's state flower is the longleaf pine."]  # "state tree" shares the question's words
    numbers = swapped_claims("Angola has 18 provinces.", ["18", "eighteen"], "How many provinces does Angola have?",
                             "Angola is divided into 18 provinces and 163 municipalities.", random.Random(0))
    assert numbers == ["Angola has 163 provinces."]  # a number only for a number
    assert swapped_claims("It is red.", ["blue"], "What colour is it?", sentence, random.Random(0)) == []
