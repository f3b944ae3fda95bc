"""``python -m bench.profiles <dir>``: the hottest functions in py-spy's collapsed stacks.

Prints, per profile file, the share of samples each function is on the stack (cumulative) and at
the top of the stack (self), so a change can be aimed at what the profile says costs time."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

IDLE = ("select (selectors.py", "_run_once (asyncio/base_events.py", "run_forever", "poll (selectors.py")


def summarise(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "Runner.run" not in stack:  # start-up (imports), not the steady state
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            cumulative[frame] += count
    lines = [f"== {path} ({total} samples)", "-- self"]
    lines += [f"{n / total * 100:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("-- cumulative")
    lines += [f"{n / total * 100:5.1f}%  {name}" for name, n in cumulative.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` without the line number, so lines of one function add up."""
    name, _, rest = frame.partition(" (")
    return f"{name} ({rest.rsplit(':', 1)[0]})" if rest else name


def main() -> None:
    top = 25
    for arg in sys.argv[1:]:
        folder = Path(arg)
        for path in sorted(folder.rglob("*.txt")) if folder.is_dir() else [folder]:
            print(summarise(path, top))


if __name__ == "__main__":
    main()
