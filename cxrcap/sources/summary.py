"""What a split read holds, in the lines `python -m cxrcap data` and `reproduce` print: counts,
missing images, licences, the chest X-ray rule applied and the bytes read."""

from __future__ import annotations

from .split import SplitData


def split_report(split: SplitData, advice: bool = True) -> list[str]:
    """The lines `data` prints for a split; `advice`: with the source's advice on getting missing images."""
    found = len(split.dataset)
    lines = [f"{split.name}: {split.rows_read} rows read, {split.kept} kept"
             f"{' as chest X-rays' if split.kept != split.rows_read else ''}; "
             f"images: {found} found, {len(split.missing_images)} missing"]
    if split.missing_images:
        shown = ", ".join(split.missing_images[:5]) + (", ..." if len(split.missing_images) > 5 else "")
        lines.append(f"  missing images: {shown}" + (" (--out lists them all)" if len(split.missing_images) > 5 else ""))
        if advice and split.missing_images_advice:
            lines.append(f"  {split.missing_images_advice}")
    licences = ", ".join(f"{name} {count}" for name, count in split.licences.most_common())
    lines.append(f"  licences: {licences or 'none kept'}")
    if split.licence_dropped:
        lines.append(f"  licence filter: {split.licence_dropped} chest X-rays left out")
    lines += rule_report(split)
    if split.reading is not None:
        reading = split.reading
        lines.append(f"  bytes: {reading['bytes_read']:,} read from the source now (0: all from the cache), "
                     f"{reading['bytes_stored']:,} stored in the cache ({reading['kept_image_bytes']:,} of them "
                     "the kept images)")
        if reading["streamed"] and reading["bytes_read"]:
            lines.append("  streamed: not parquet, so read in one pass, every data file whole "
                         "(image files that rows name by path only when chosen)")
    return lines


def rule_report(split: SplitData) -> list[str]:
    """Which chest X-ray rule was applied, and how many rows each rule keeps among the rows read."""
    if split.rule == "none":
        return ["  rule: none (no chest X-ray filter)"]
    counts = split.rule_counts
    if "concept" not in counts:
        return [f"  rule: caption (CHEST_XRAY_RULE): {counts['caption']} of {split.rows_read} rows"]
    either = counts["concept"] + counts["caption"] - counts["both"]
    agreement = (split.rows_read - either + counts["both"]) / split.rows_read if split.rows_read else 1.0
    return [f"  rule: {split.rule} ({'CONCEPT_RULE' if split.rule == 'concept' else 'CHEST_XRAY_RULE'}); "
            f"concept rule {counts['concept']}, caption rule {counts['caption']}, both {counts['both']} "
            f"of {split.rows_read} rows (agreement {agreement:.1%}, Jaccard "
            f"{counts['both'] / either if either else 1.0:.2f})"]
