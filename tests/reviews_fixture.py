"""Reviews for tests: nine reviews of three X-rays (test_reviews.py, test_review_summary.py)."""

from cxrcap.reviews import ReviewStore, make_review

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
TRUTH = "Left pleural effusion and cardiomegaly."

# (image, variant, caption, rating): ties in ratings and in scores on purpose.
FIXTURE = [
    (SHA_A, "git-base", "left pleural effusion and cardiomegaly", "correct"),
    (SHA_A, "blip-base", "left pleural effusion", "partly"),
    (SHA_A, "git-base-ft", "right pneumothorax", "wrong"),
    (SHA_B, "git-base", "left pleural effusion and cardiomegaly", "partly"),
    (SHA_B, "blip-base", "chest x-ray", "wrong"),
    (SHA_B, "blip-base-ft", "cardiomegaly", "partly"),
    (SHA_C, "git-base", "a chest x-ray", "wrong"),
    (SHA_C, "blip-base-ft", "effusion on the left and cardiomegaly", "correct"),
    (SHA_C, "git-base-ft", "chest x-ray", "wrong"),
]


def review(**changes):
    fields = dict(variant="git-base", caption="left pleural effusion", rating="partly", image_sha256=SHA_A,
                  ground_truth=TRUTH, reviewer="Dr A", role="radiologist")  # fmt: skip
    fields.update(changes)
    return make_review(**fields)[0]


def add_fixture(store: ReviewStore) -> ReviewStore:
    """`FIXTURE` stored, by two reviewers taking turns."""
    store.add([review(image_sha256=image, variant=variant, caption=caption, rating=rating, reviewer=f"Dr {i % 2}")
               for i, (image, variant, caption, rating) in enumerate(FIXTURE)])  # fmt: skip
    return store
