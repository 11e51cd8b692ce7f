"""The set-up keeps torch at the pinned CPU wheel while the framework extras install.

`constraints.txt` pins torch; the test extra pulls Lightning, transformers, Accelerate and Keras.
Walking the installed requirement tree of ``lrkit[test]`` (markers evaluated for the extras each
edge asks for) finds every requirement any of them puts on torch: the pin must satisfy them all,
or a fresh `make test` would fail to resolve (or, without constraints, pull a multi-GB CUDA build).
"""

from __future__ import annotations

import importlib.metadata as metadata
from collections import deque
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pinned_torch() -> Version:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement.startswith("torch=="):
            return Version(requirement.removeprefix("torch=="))
    raise AssertionError("constraints.txt pins no torch version")


def _requirements(root: str, extras: set[str]) -> list[tuple[str, Requirement]]:
    """(who asks, requirement) for every requirement reachable from the installed `root[extras]`."""
    found, seen = [], set()
    queue = deque([(canonicalize_name(root), frozenset(extras))])
    while queue:
        name, wanted = queue.popleft()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not any(requirement.marker.evaluate({"extra": extra})
                                              for extra in wanted | {""}):
                continue
            found.append((name, requirement))
            try:
                metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency this machine does not have
            queue.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def test_the_installed_torch_is_the_pinned_one():
    assert Version(torch.__version__).base_version == str(_pinned_torch())


def test_the_test_extra_installs_every_framework_lrkit_integrates_with():
    frameworks = {"lightning", "transformers", "accelerate", "keras", "mkdocs-material", "mkdocstrings"}
    in_test = {canonicalize_name(requirement.name) for _, requirement in _requirements("lrkit", {"test"})}
    in_base = {canonicalize_name(requirement.name) for _, requirement in _requirements("lrkit", set())}
    assert frameworks <= in_test
    assert not frameworks & in_base  # a plain install pulls none of them in
    for name in frameworks:
        metadata.distribution(name)  # installed by `make test`'s set-up


def test_every_requirement_on_torch_in_the_test_set_up_accepts_the_pin():
    pin = _pinned_torch()
    on_torch = [(who, requirement) for who, requirement in _requirements("lrkit", {"test", "dev"})
                if canonicalize_name(requirement.name) == "torch"]
    assert {"lrkit", "lightning", "accelerate"} <= {who for who, _ in on_torch}  # the walk reaches the frameworks
    refusing = [f"{who}: {requirement}" for who, requirement in on_torch if pin not in requirement.specifier]
    assert not refusing, f"torch=={pin} does not satisfy {refusing}"
