"""Every refusal of the compiler, the packer and the bundle writer (`tinyswap.export`).

They live here, beside the compiler, rather than in `tinyswap.errors`, because the runtime never
raises them and must not depend on the compiler (docs/architecture.md, "Layers"). All of them
derive from `ExportError`, so a caller can catch "the export step refused" in one clause, and
from `tinyswap.errors.TinySwapError`, so the command line reports them like every other refusal.
The modules that raise them re-export their own (`tinyswap.export.spec.SpecError`, ...).
"""

from __future__ import annotations

from tinyswap.errors import TinySwapError


class ExportError(TinySwapError):
    """Base class of everything `tinyswap.export` refuses."""


class BuilderError(ExportError):
    """A model handed to the flatbuffer builder is inconsistent."""


class GraphError(BuilderError):
    """The operator graph handed to the builder is inconsistent (a tensor produced twice, used before it exists, ...)."""


class OptionError(BuilderError):
    """An operator's builtin options name an unknown field or give a value of the wrong type or range."""


class LayoutError(BuilderError):
    """The produced file breaks a byte-layout promise of the builder (a builder bug, not misuse)."""


class SpecError(ExportError):
    """A model spec or its weights are inconsistent; the message names the layer and field."""


class KerasImportError(SpecError):
    """Keras layers the import cannot take (all listed at once, each with what to do), or a
    LoRA-enabled model exported without a place for its LoRA."""


class TorchImportError(SpecError):
    """PyTorch modules or calls the import cannot take, each with what to do instead."""


class ModelSourceError(ExportError):
    """`export_model` cannot tell what the source is, or lacks what that source needs
    (calibration data, an example input, TensorFlow for a Keras file)."""


class SlotPlanError(ExportError):
    """A slot plan field has an invalid value; the message names the field and the value."""


class AdapterSourceError(ExportError):
    """An adapter directory cannot be read or describes something tinyswap cannot pack."""


class AdapterQuantError(ExportError):
    """An adapter cannot be fitted into its slot (e.g. a bottleneck wider than the slot)."""


class SectionError(ExportError):
    """The linker section asked for the model array (`--section`, `--section-align`) is unusable:
    a name that is not `.` plus identifier characters, too long, or an alignment that is not a
    power of two at least the slot map's."""


class PackError(ExportError):
    """The adapter cannot be packed for this bundle (unknown layer, wrong kind, bad files)."""


class InjectError(ExportError):
    """Slots cannot be injected into this `.tflite` (an operator, tensor type or plan target the
    injection does not take); the message names the operator and what to do."""


class UnknownTargetError(InjectError):
    """A slot plan names operators the `.tflite` does not have; the message lists every unknown
    name and the valid ones (`#<operator index>` or the operator's output tensor name)."""


class PublishError(ExportError):
    """The adapter repository cannot be created or changed as asked (`tinyswap repo ...`); every
    check runs before the first file is written, so a refusal leaves the repository as it was."""


class RepositoryDirError(PublishError):
    """The repository folder is missing, not a folder, not a repository, or already one (init)."""


class RoleKeyError(PublishError):
    """A role key cannot be used: missing or unreadable file, not Ed25519, or a bad threshold."""


class WrongRoleKeyError(RoleKeyError):
    """A key was given for a role whose keys (in the current root) do not include it."""


class TooFewKeysError(RoleKeyError):
    """Fewer keys of a role were given than its threshold of signatures needs."""


class RepositoryTargetError(PublishError):
    """A package cannot be listed (not a valid package, or a name unusable as a target path)."""


__all__ = ["AdapterQuantError", "AdapterSourceError", "BuilderError", "ExportError", "GraphError", "InjectError", "LayoutError",
           "OptionError", "PackError", "PublishError", "RepositoryDirError", "RepositoryTargetError", "RoleKeyError",
           "SectionError", "SlotPlanError", "SpecError", "TooFewKeysError", "UnknownTargetError", "WrongRoleKeyError"]
