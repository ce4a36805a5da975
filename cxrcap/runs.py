"""A run's outputs: whether a rerun into them is the same run, and pushing them to the hub.

`python -m finetune --resume` and `python -m cxrcap reproduce` both continue work left in a
folder, so both compare the options it was started with (saved there) to the new ones
(`differences`), and both publish what they wrote as hub repositories (`push_folder`).
"""

from __future__ import annotations

from pathlib import Path


def differences(saved: dict, current: dict, where: str = "") -> list[str]:
    """'key was X, now Y' for each value that differs, nested dicts by dotted keys: the current
    keys first, in their order (the caller's most telling first), then keys only `saved` has."""
    found = []
    for key in [*current, *(key for key in saved if key not in current)]:
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new, f"{where}{key}.")
        elif old != new:
            found.append(f"{where}{key} was {old!r}, now {new!r}")
    return found


def push_folder(folder: Path, repo_id: str, *, message: str, repo_type: str = "model") -> None:
    """Upload `folder` as the hub repository `repo_id` (created if needed). Raises what
    huggingface_hub raises (no token, no network, no rights): the caller says what still stands."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), commit_message=message)
