"""Shadow accuracy: which held-out rows a candidate adapter classifies right, bit-exactly.

The server runs the candidate the way a device does (`SwapManager` over the same INT8 model,
the same package bytes): batched per-row inference with one adapter per row, two domains per
batch (the bundle has two slots). A device of domain d running package p on held-out row i is
right exactly when `correct[p][d][i]`; tier-B devices recompute their rows on their own flash
and the fleet checks the two agree byte for byte (`TierBDevice.shadow`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tinyswap.image import RamImage
from tinyswap.package import Keyring, parse_package
from tinyswap.slotmap import SlotMap
from tinyswap.swap import BASE, SwapManager


FILLER = "\x00filler"  # not a domain name


class ShadowEvaluator:
    def __init__(self, model: bytes, slotmap: SlotMap, keyring: Keyring, images: Mapping[str, np.ndarray],
                 labels: np.ndarray, filler: bytes | None = None) -> None:
        """filler: a package of another name, put in slot 0 to measure a lone adapter in slot 1."""
        self.model, self.slotmap, self.keyring = model, slotmap, keyring
        self.filler = filler
        self.images, self.labels = images, labels

    def base(self, domains: list[str]) -> dict[str, np.ndarray]:
        """Per domain, the rows the base model (every gate off) gets right."""
        manager = SwapManager(RamImage(self.model), self.slotmap, self.keyring)
        x = np.concatenate([self.images[d] for d in domains])
        right = manager.infer(x, adapter_names=[BASE] * len(x))[0].argmax(axis=1) == np.tile(self.labels, len(domains))
        return dict(zip(domains, np.split(right, len(domains))))

    def correct(self, packages: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        """Per domain, the rows its package gets right in slot 0 and in slot 1 ([2, rows]).

        The slot matters: the graph adds the slots' branches one after the other, each sum
        rounded to int8, so one adapter gives different bytes in slot 0 than in slot 1 (with
        the other slot's gate off; what that slot holds does not matter). Domains go in pairs,
        each pair loaded twice (both orders), with one adapter per row of the batch."""
        domains = sorted(packages)
        out = {d: np.zeros((2, len(self.labels)), bool) for d in domains}
        for start in range(0, len(domains), 2):
            group = domains[start:start + 2]
            for order in (group, group[::-1]) if len(group) == 2 else (group, [FILLER, *group]):
                right = self._run(order, packages)
                for slot, domain in enumerate(order):
                    if domain != FILLER:
                        out[domain][slot] = right[domain]
        return out

    def correct_in_slot0(self, packages: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        """Per domain, the rows its package gets right in slot 0 only (half the work of `correct`)."""
        out: dict[str, np.ndarray] = {}
        domains = sorted(packages)
        for domain in domains:
            out.update(self._run([domain], packages))
        return out

    def _run(self, order: list[str], packages: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        manager = SwapManager(RamImage(self.model), self.slotmap, self.keyring)
        names = {}
        for domain in order:  # loaded in this order: slot 0, then slot 1
            if domain == FILLER:
                if self.filler is None:
                    raise ValueError("a single-domain evaluation in slot 1 needs a filler package")
                package = parse_package(self.filler)
            else:
                package = parse_package(packages[domain])
            names[domain] = package.name
            manager.load_adapter(package)
        real = [d for d in order if d != FILLER]
        x = np.concatenate([self.images[d] for d in real])
        per_row = [names[d] for d in real for _ in range(len(self.labels))]
        predicted = manager.infer(x, adapter_names=per_row)[0].argmax(axis=1)
        right = predicted == np.tile(self.labels, len(real))
        return dict(zip(real, np.split(right, len(real))))


__all__ = ["ShadowEvaluator"]
