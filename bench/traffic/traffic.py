#!/usr/bin/env python3
"""The traffic-analysis attack of `rvenc bench traffic` (docs/traffic-shaping.md).

  traffic.py corpus --seed S --per-class N --out FILE
      Writes the corpus the demo engine replays (rvenc enclave --demo-replay): N answers of each of
      two classes, generated deterministically from the seed (no data set is downloaded). The
      classes differ as real topics do: "code" answers are longer, with many short tokens (symbols,
      indentation) produced fast; "facts" answers are shorter, made of whole words, produced at a
      slower token rate. Each line: {"class", "tokens", "delaysMs"}.

  traffic.py classify --dir DIR --json FILE [--svg FILE]
      Reads DIR/corpus.jsonl, DIR/traffic.jsonl (what the gateway recorded: per stream the event
      sizes and arrival times, rvenc gateway --record-traffic) and DIR/streams.jsonl (what the
      client measured: mode, answer, time to first and last token), trains classifiers on the
      gateway's view per mode and reports AUC / AUPRC on held-out streams (stratified 5-fold
      cross-validation: every stream is scored by a model that never saw it), with each mode's cost
      against `off` for the same answers: added TTFT p50/p99, added time to last token, bandwidth.

scikit-learn comes from scripts/setup_sklearn.sh (.deps/sklearn, put on sys.path here).
"""
import argparse
import json
import math
import os
import random
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".deps", "sklearn", "usr", "lib", "python3", "dist-packages"))

MODES = ["off", "pad", "cadence"]
CLASSES = ["facts", "code"]

CODE_WORDS = ["def", "return", "self", "value", "items", "result", "index", "for", "in", "if", "else", "import",
              "len", "range", "key", "data", "node", "None", "True", "print", "list", "dict", "count", "name"]
CODE_SYMBOLS = ["(", ")", ":", "=", ",", ".", "[", "]", "{", "}", "\n", "    ", "+", "==", "'", "\"", "_", "->", "#"]
FACT_WORDS = ["the", "capital", "population", "approximately", "located", "kilometres", "century", "river",
              "northern", "government", "official", "language", "largest", "founded", "republic", "economy",
              "mountains", "region", "historically", "known", "important", "between", "several", "million"]


def lognormal_count(rng, median, sigma, low, high):
    return max(low, min(high, int(round(rng.lognormvariate(math.log(median), sigma)))))


def gap_ms(rng, mean):
    return max(1, int(round(rng.gammavariate(4.0, mean / 4.0))))


def make_answer(rng, cls):
    if cls == "code":
        count = lognormal_count(rng, 200, 0.35, 40, 600)
        tokens = [rng.choice(CODE_SYMBOLS) if rng.random() < 0.55 else rng.choice(CODE_WORDS) for _ in range(count)]
        first, mean = rng.lognormvariate(math.log(300), 0.3), 20.0
    else:
        count = lognormal_count(rng, 130, 0.35, 20, 400)
        tokens = [" " + rng.choice(FACT_WORDS) if rng.random() < 0.9 else rng.choice([",", "."]) for _ in range(count)]
        first, mean = rng.lognormvariate(math.log(260), 0.3), 31.0
    delays = [int(round(first))] + [gap_ms(rng, mean) for _ in range(count - 1)]
    return {"class": cls, "tokens": tokens, "delaysMs": delays}


def corpus(args):
    rng = random.Random(args.seed)
    with open(args.out, "w") as out:
        for i in range(2 * args.per_class):
            out.write(json.dumps(make_answer(rng, CLASSES[i % 2])) + "\n")


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


FEATURES = ["events", "bytes", "duration", "first event", "mean size", "size sd", "min size", "max size",
            "distinct sizes", "small events", "mean gap", "gap sd", "gap p10", "gap p50", "gap p90",
            "first record", "end off grid"]


def features(view):
    """What an observer of the gateway's socket can compute from the stream: counts, sizes, timing.

    An attacker that knows the policy also looks where cadence could still leak: the first record's
    time (after init), and how far the last event lands from the cadence grid (the duration against
    the event count times the median gap, the grid's step as the stream shows it). The billed usage
    is a separate channel (usage_feature): the issue's attacker sees sizes and arrival times only,
    and the report gives the AUC with it as well (docs/traffic-shaping.md)."""
    events = view["events"]
    times = [t for t, _ in events]
    sizes = [b for _, b in events]
    gaps = [b - a for a, b in zip(times, times[1:])] or [0.0]
    q = statistics.quantiles(gaps, n=10) if len(gaps) > 1 else [gaps[0]] * 9
    small = sum(1 for s in sizes if s < 400)
    duration = times[-1] - times[0] if times else 0
    off_grid = duration - (len(gaps) * statistics.median(gaps))
    return [len(events), sum(sizes), duration, times[0] if times else 0,
            statistics.mean(sizes), statistics.pstdev(sizes), min(sizes), max(sizes), len(set(sizes)), small,
            statistics.mean(gaps), statistics.pstdev(gaps), q[0], q[4], q[8],
            times[1] if len(times) > 1 else 0, off_grid]


def usage_feature(view):
    """The completion tokens the gateway billed for the stream (under cadence rounded to a bucket)."""
    return view.get("completionTokens", 0)


def single_feature_aucs(x, y, names):
    """Each feature alone, as a threshold: its AUC (folded above 0.5). What still leaks, one by one."""
    from sklearn.metrics import roc_auc_score
    out = {}
    for i, name in enumerate(names):
        column = [row[i] for row in x]
        if len(set(column)) < 2:
            out[name] = 0.5
            continue
        auc = roc_auc_score(y, column)
        out[name] = round(max(auc, 1 - auc), 3)
    return out


def attack(x, y):
    """The best of two attackers, scored on held-out streams only."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=1)
    best = None
    for model in (GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=1),
                  make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))):
        scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
        # A classifier that learned the classes backwards is as good as one that learned them.
        auc = roc_auc_score(y, scores)
        if auc < 0.5:
            scores, auc = [1 - s for s in scores], 1 - auc
        result = (auc, average_precision_score(y, scores))
        best = result if best is None or result[0] > best[0] else best
    return best


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def classify(args):
    answers = read_lines(os.path.join(args.dir, "corpus.jsonl"))
    views = {v["requestId"]: v for v in read_lines(os.path.join(args.dir, "traffic.jsonl"))}
    streams = [s for s in read_lines(os.path.join(args.dir, "streams.jsonl")) if s.get("ok")]
    by_mode = {m: {} for m in MODES}
    for s in streams:
        view = views.get(s["requestId"])
        if view and view["events"]:
            by_mode[s["mode"]][s["answer"]] = (s, view)
    report = {"modes": {}, "streams": len(streams), "answers": len(answers), "classes": CLASSES}
    base = by_mode["off"]
    for mode in MODES:
        rows = by_mode[mode]
        keys = sorted(rows)
        x = [features(rows[k][1]) for k in keys]
        y = [CLASSES.index(answers[k]["class"]) for k in keys]
        usable = len(set(y)) == 2 and min(y.count(0), y.count(1)) >= 5
        auc, auprc = attack(x, y) if usable else (float("nan"),) * 2
        # The same attacker that also reads the billed usage (the gateway bills, so it knows it).
        x_usage = [row + [usage_feature(rows[k][1])] for row, k in zip(x, keys)]
        auc_usage, _ = attack(x_usage, y) if usable else (float("nan"),) * 2
        single = single_feature_aucs(x_usage, y, FEATURES + ["billed tokens"]) if usable else {}
        common = [k for k in keys if k in base]
        ttft = [rows[k][0]["ttftMs"] - base[k][0]["ttftMs"] for k in common]
        last = [rows[k][0]["lastTokenMs"] - base[k][0]["lastTokenMs"] for k in common]
        bytes_mode = sum(sum(b for _, b in rows[k][1]["events"]) for k in common)
        bytes_off = sum(sum(b for _, b in base[k][1]["events"]) for k in common)
        report["modes"][mode] = {
            "auc": round(auc, 3), "auprc": round(auprc, 3), "streams": len(keys),
            "aucWithUsage": round(auc_usage, 3), "singleFeatureAuc": single,
            "addedTtftP50Ms": round(percentile(ttft, 50), 1), "addedTtftP99Ms": round(percentile(ttft, 99), 1),
            "addedLastTokenP50Ms": round(percentile(last, 50), 1),
            "addedLastTokenP99Ms": round(percentile(last, 99), 1),
            "bandwidthOverhead": round(bytes_mode / bytes_off - 1, 3) if bytes_off else 0.0}
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(table(report))
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(report))


def table(report):
    lines = ["mode      AUC    AUPRC  AUC+usage  +TTFT p50  +TTFT p99  +last token p50  bandwidth  streams"]
    for mode, m in report["modes"].items():
        lines.append(f"{mode:8} {m['auc']:5.3f}  {m['auprc']:5.3f}  {m['aucWithUsage']:9.3f}"
                     f"  {m['addedTtftP50Ms']:7.1f} ms {m['addedTtftP99Ms']:7.1f} ms"
                     f"  {m['addedLastTokenP50Ms']:11.1f} ms  {m['bandwidthOverhead'] * 100:+7.1f} %  {m['streams']:7}")
    for mode, m in report["modes"].items():
        top = sorted(m["singleFeatureAuc"].items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"{mode:8} single features: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    return "\n".join(lines)


def svg(report):
    """AUC per mode against its cost (bandwidth, added TTFT p50): a small dependency-free SVG.

    Filled dots: the attacker on the stream (sizes and times); rings: the same attacker also
    reading the billed usage."""
    w, h, pad, gap = 820, 300, 50, 40
    panel = (w - gap) // 2
    panels = [("bandwidthOverhead", "bandwidth overhead vs off (-50 % .. +100 %)", -0.5, 1.0, 100, " %"),
              ("addedTtftP50Ms", "added TTFT p50 (0 .. 100 ms)", 0.0, 100.0, 1, " ms")]
    def py(auc):
        return h - pad - (auc - 0.4) / 0.6 * (h - 2 * pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, (key, label, low, high, scale, unit) in enumerate(panels):
        x0 = i * (panel + gap)
        def px(v):
            return x0 + pad + (max(low, min(high, v)) - low) / (high - low) * (panel - 2 * pad)
        parts += [f'<line x1="{x0 + pad}" y1="{h - pad}" x2="{x0 + panel - pad}" y2="{h - pad}" stroke="black"/>',
                  f'<line x1="{x0 + pad}" y1="{pad}" x2="{x0 + pad}" y2="{h - pad}" stroke="black"/>',
                  f'<text x="{x0 + panel / 2}" y="{h - 12}" text-anchor="middle">{label}</text>',
                  f'<text x="{x0 + 14}" y="{h / 2}" transform="rotate(-90 {x0 + 14} {h / 2})" text-anchor="middle">'
                  'attack AUC (0.4 .. 1.0)</text>',
                  f'<line x1="{x0 + pad}" y1="{py(0.5)}" x2="{x0 + panel - pad}" y2="{py(0.5)}" stroke="#bbb" stroke-dasharray="4"/>',
                  f'<text x="{x0 + panel - pad}" y="{py(0.5) - 4}" text-anchor="end" fill="#888">chance</text>',
                  f'<line x1="{x0 + pad}" y1="{py(0.55)}" x2="{x0 + panel - pad}" y2="{py(0.55)}" stroke="#6a6" stroke-dasharray="2"/>',
                  f'<text x="{x0 + panel - pad}" y="{py(0.55) - 4}" text-anchor="end" fill="#6a6">cadence target 0.55</text>']
        placed = []  # label positions so far: a label that would sit on another moves down a line
        for mode, m in report["modes"].items():
            if isinstance(m["auc"], float) and math.isnan(m["auc"]):
                continue
            x, y = px(m[key]), py(max(0.4, min(1.0, m["auc"])))
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#c33"/>')
            if not math.isnan(m.get("aucWithUsage", float("nan"))):
                parts.append(f'<circle cx="{x:.1f}" cy="{py(max(0.4, min(1.0, m["aucWithUsage"]))):.1f}" r="5" '
                             'fill="none" stroke="#36c"/>')
            ly = y + 4
            while any(abs(px_ - x) < 60 and abs(py_ - ly) < 12 for px_, py_ in placed):
                ly += 12
            placed.append((x, ly))
            parts.append(f'<text x="{x + 8:.1f}" y="{ly:.1f}">{mode} (AUC {m["auc"]:.2f}, '
                         f'{m[key] * scale:+.0f}{unit})</text>')
    parts.append(f'<text x="{w / 2}" y="16" text-anchor="middle">filled: sizes and times; ring: also the billed usage</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--seed", type=int, default=25)
    c.add_argument("--per-class", type=int, default=40)
    c.add_argument("--out", required=True)
    k = sub.add_parser("classify")
    k.add_argument("--dir", required=True)
    k.add_argument("--json", required=True)
    k.add_argument("--svg")
    args = parser.parse_args()
    if args.command == "classify":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            sys.exit("traffic.py: scikit-learn is missing: run scripts/setup_sklearn.sh")
    (corpus if args.command == "corpus" else classify)(args)


if __name__ == "__main__":
    main()
