"""A rerun into a run's folder is the same run only with the same options, named where they differ."""

from cxrcap.runs import differences


def test_differences_name_nested_values_current_keys_first_then_keys_only_saved_has():
    saved = {"run": {"data": "roco", "max_steps": 5}, "recipe": {"learning_rate": 5e-5}, "gone": 1}
    current = {"recipe": {"learning_rate": 1e-4}, "run": {"data": "roco", "max_steps": 5}}
    assert differences(saved, current) == ["recipe.learning_rate was 5e-05, now 0.0001", "gone was 1, now None"]
    assert differences(current, current) == []
