"""What the Ethos-U back end refuses: no Vela, a Vela run that failed, a graph it cannot stitch."""

from __future__ import annotations

from tinyswap.export.errors import ExportError


class NpuError(ExportError):
    """Base class of every refusal of `tinyswap.export.npu`."""


class VelaNotInstalledError(NpuError):
    """Arm's Vela compiler (`ethos-u-vela`) is not importable in this environment."""

    def __init__(self) -> None:
        super().__init__("an Ethos-U bundle needs Arm's Vela compiler, which is not installed: "
                         "pip install 'tinyswap[npu]' (or pip install ethos-u-vela)")


class VelaCompileError(NpuError):
    """Vela refused or failed to compile one segment; the message carries its own words."""


class StitchError(NpuError):
    """Vela's output for a segment does not fit the graph it must be stitched into."""


class ConditionalBranchesError(NpuError):
    """A slot plan with conditional branches: Ethos-U runs no IF (control flow), so the base could
    not be cut into NPU segments around the branches."""

    def __init__(self) -> None:
        super().__init__("an Ethos-U bundle needs the slot plan's default branches ('always'): conditional "
                         "branches are IF operators with subgraphs, which Vela does not compile and the NPU "
                         "stitcher does not partition; drop \"branches\": \"conditional\" from the plan for --npu")


class NpuConfigError(NpuError):
    """An accelerator configuration that is not one of the four supported names."""
