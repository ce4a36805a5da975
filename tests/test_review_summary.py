"""The reviews' statistics: rating shares with Wilson intervals, Kendall's tau-b against the metrics."""

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from cxrcap import review_summary, reviews
from cxrcap.review_summary import kendall_tau_b, summarise, wilson_interval
from cxrcap.reviews import ReviewStore
from reviews_fixture import FIXTURE, SHA_A, add_fixture


@pytest.fixture
def fixture_store(tmp_path):
    return add_fixture(ReviewStore(tmp_path / "reviews.sqlite"))


def test_kendall_tau_b_equals_scipy_on_the_fixture(fixture_store):
    rows = fixture_store.rows()
    ranks = [review_summary.RATING_RANK[row["rating"]] for row in rows]
    summary = summarise(rows, n_resamples=200)
    for agreement in summary.agreements:
        scores = [row["scores"][agreement.metric] for row in rows]
        expected = kendalltau(ranks, scores, variant="b").statistic
        if math.isnan(expected):
            assert math.isnan(agreement.tau_b)
        else:
            assert agreement.tau_b == pytest.approx(expected, abs=1e-12)
            assert agreement.low <= agreement.tau_b <= agreement.high
        assert agreement.n_reviews == len(FIXTURE)
    assert not math.isnan(summary.agreements[0].tau_b)  # BLEU varies: the fixture tests something


def test_weighted_kendall_tau_b_equals_scipy_on_repeated_observations():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, 40)
    y = np.round(rng.random(40), 1)  # many ties
    weights = rng.integers(0, 4, size=(5, 40))
    taus = kendall_tau_b(x, y, weights)
    for row, tau in zip(weights, taus):
        expected = kendalltau(np.repeat(x, row), np.repeat(y, row), variant="b").statistic
        assert tau == pytest.approx(expected, abs=1e-12)
    # by hand: two concordant pairs, one tie in x, none in y: 2 / sqrt(2 * 3)
    assert kendall_tau_b([0, 1, 1], [0.1, 0.2, 0.3])[0] == pytest.approx(2 / math.sqrt(6))


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_summary_shares_reviewers_and_markdown(fixture_store):
    summary = summarise(fixture_store.rows(), n_resamples=100)
    assert (summary.n_reviews, summary.n_reviewers, summary.n_images) == (9, 2, 3)
    git = summary.variants[0]
    assert git.variant == "git-base" and (git.n_reviews, git.n_images) == (3, 3)
    assert [git.shares[r].count for r in reviews.RATINGS] == [1, 1, 1]
    assert git.shares["correct"].share == pytest.approx(1 / 3)
    assert (git.shares["correct"].low, git.shares["correct"].high) == pytest.approx(wilson_interval(1, 3))
    text = review_summary.summary_markdown(summary)
    assert "| GIT base | 3 | 2 | 33% (6%-79%)" in text and "Wilson 95% interval" in text
    assert "Kendall's tau-b" in text and "bootstrap over images" in text
    assert review_summary.summary_markdown(summarise([])).startswith("No reviews yet")
    one_image = summarise([row for row in fixture_store.rows() if row["image_sha256"] == SHA_A])
    assert not math.isnan(one_image.agreements[0].tau_b) and math.isnan(one_image.agreements[0].low)
    assert review_summary._signed(-0.0004) == "+0.00"
