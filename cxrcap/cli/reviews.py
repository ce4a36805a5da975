"""`python -m cxrcap reviews summary|export|delete`: the clinicians' reviews database (`cxrcap.reviews`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..review_summary import summarise, summary_markdown
from ..reviews import ReviewStore, default_database, to_csv


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("summary", "export", "delete"))
    parser.add_argument("--db", type=Path, default=None,
                        help="the reviews database (default: $CXRCAP_REVIEWS, else data/reviews.sqlite)")  # fmt: skip
    parser.add_argument("--csv", type=Path, default=None, help="export: write this CSV file (default: print it)")
    parser.add_argument("--reviewer", default=None, help="delete: every review by this reviewer (name as stored)")


def run(args) -> int:
    path = args.db or default_database()
    if not path.exists():
        raise ValueError(f"no reviews database at {path}")
    try:
        store = ReviewStore(path)
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not a reviews database ({error})") from None
    if args.action == "summary":
        print(summary_markdown(summarise(store.rows())))
    elif args.action == "export":
        rows = store.rows()
        if args.csv:
            args.csv.write_text(to_csv(rows), encoding="utf-8")
            print(f"{len(rows)} reviews written to {args.csv}")
        else:
            print(to_csv(rows), end="")
    else:
        if not args.reviewer:
            raise ValueError("delete needs --reviewer NAME")
        print(f"deleted {store.delete_reviewer(args.reviewer)} reviews by {args.reviewer!r}")
    return 0
