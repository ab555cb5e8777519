#!/usr/bin/env python3
"""Where a full apply's CPU time and kernel page zeroing go, phase by phase.

Reads `perf script` output of a `perf record --call-graph dwarf` run of the full_apply bench
and counts, for each phase of the apply, the samples and those of them in the kernel
zeroing a fresh page (`clear_page*`, under the page fault of a first touch). A sample's
phase is the first of the frames below found in its stack (the bench's own table and
encoding, and the model made after the apply, are counted apart from the apply):

    cd gateway && perf record -F 1000 --call-graph dwarf,32768 -o /tmp/fa.data \\
        <full_apply bench binary> --tenants 100000 --rounds 3 --encoding binary
    perf script -i /tmp/fa.data | ../benches/fresh_pages.py

`--sites PHASE` lists the allocation sites (the first frame of this project) of that
phase's page-zeroing samples instead. `--timeline MS` prints, for each MS milliseconds of
the run, the samples of each phase (all threads): with `-F 2000`, two busy cores give
4 * MS samples a bucket, so a bucket of the apply with about half that is a step on one
thread (`*` marks page zeroing).
"""

import collections
import sys

# (frame text, phase): the first that a sample's stack holds names its phase.
PHASES = [
    ("fixtures::", "bench: making the table"),
    ("binary::encode", "bench: making the table"),
    ("Tenants as serde_core::ser", "bench: making the table"),
    ("Model::from_checked", "after: the model"),
    ("state_digest", "after: the model"),
    ("drop_elsewhere", "after: dropping the old table"),
    ("claims::unique", "claims (rules across tenants)"),
    ("shard::tenants", "decode + per-tenant checks"),
    ("shard::check", "check, one thread"),
    ("Parallel::finish", "build: id and host maps"),
    ("build::tenants", "build: tenants"),
    ("snapshot::build::build", "build, one thread"),
    ("realmgate_table::digest", "side thread: digest"),
    ("persist::stage", "side thread: stage"),
    ("persist::commit", "commit (rename, fsync)"),
    ("binary::decode", "decode, one thread"),
    ("drop_in_place", "dropping (elsewhere)"),
]


def timed_samples(lines):
    """Each sample's time (seconds, or None) and frames, innermost first."""
    frames, when = None, None
    for line in lines:
        if not line.strip():
            if frames is not None:
                yield when, frames
            frames = None
        elif not line[0].isspace():
            frames = []
            when = next(
                (float(w[:-1]) for w in line.split() if w.endswith(":") and w[:-1].replace(".", "").isdigit()),
                None,
            )
        elif frames is not None:
            frames.append(line.strip())
    if frames is not None:
        yield when, frames


def samples(lines):
    """Each sample's frames, innermost first."""
    for _, frames in timed_samples(lines):
        yield frames


def timeline(lines, ms):
    """Per bucket of `ms` milliseconds from the first sample: samples by phase."""
    buckets, start = collections.defaultdict(collections.Counter), None
    for when, frames in timed_samples(lines):
        if when is None:
            continue
        start = when if start is None else start
        zeroing = "*" if frames and "clear_page" in frames[0] else ""
        buckets[int((when - start) * 1000 / ms)][phase_of(frames) + zeroing] += 1
    for b in sorted(buckets):
        parts = ", ".join(f"{p} {n}" for p, n in buckets[b].most_common(4))
        print(f"{b * ms:8.0f} ms {sum(buckets[b].values()):4d}  {parts}")


def phase_of(frames):
    text = "\n".join(frames)
    return next((name for key, name in PHASES if key in text), "other")


def site_of(frames):
    for f in frames:
        if "realmgate" in f and "mi_" not in f:
            return f.split(" ", 1)[-1][:150]
    return "?"


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--timeline":
        timeline(sys.stdin, float(sys.argv[2]))
        return
    sites = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--sites" else None
    total, zeroing, at = collections.Counter(), collections.Counter(), collections.Counter()
    for frames in samples(sys.stdin):
        phase = phase_of(frames)
        total[phase] += 1
        if frames and "clear_page" in frames[0]:
            zeroing[phase] += 1
            if phase == sites:
                at[site_of(frames)] += 1
    if sites:
        for site, n in at.most_common(20):
            print(f"{n:6d}  {site}")
        return
    print(f"{'phase':34} {'samples':>8} {'zeroing':>8}")
    for phase, n in total.most_common():
        print(f"{phase:34} {n:8d} {zeroing[phase]:8d}")
    print(f"{'all':34} {sum(total.values()):8d} {sum(zeroing.values()):8d}")


if __name__ == "__main__":
    main()
