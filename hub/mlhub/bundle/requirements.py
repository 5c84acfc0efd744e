"""What a model needs installed, read from its pickle without unpickling it (no model code
runs) and pinned to the versions in this environment."""

import importlib.metadata
import pickletools


def _pickled_modules(data):
    """Top-level module names that a pickle references (its GLOBAL / STACK_GLOBAL ops).

    We read the opcode stream instead of unpickling so capturing requirements runs no code.
    """
    modules = set()
    memo = {}
    recent = []
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif name == "GLOBAL":
            modules.add(str(arg).split(" ", 1)[0].split(".")[0])
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and isinstance(recent[-2], str):
            modules.add(recent[-2].split(".")[0])
        if len(recent) > 4:
            del recent[:-4]
    return modules


def capture_requirements(modules, extra=("numpy",)):
    """Pin the installed distributions that provide ``modules`` (``dist==version``)."""
    mapping = importlib.metadata.packages_distributions()
    pins = {}
    for mod in set(modules) | set(extra):
        for dist in mapping.get(mod, []):
            try:
                pins[dist.lower()] = f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
    pins.pop("mlhub", None)
    return sorted(pins.values(), key=str.lower)
