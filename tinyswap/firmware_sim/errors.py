"""Errors the simulated device raises, under tinyswap's one hierarchy (`TinySwapError`).

Flash errors come in two separate families, and no `except` may catch both by accident:

* `FlashMisuseError`: the caller broke a rule of the part (misaligned or empty program or
  erase, a program into a unit not erased since its last program, an access outside the
  device or partition, an inconsistent geometry or fault plan). That is a driver bug: real
  parts silently corrupt data or latch an error flag, the simulator refuses loudly, and the
  update logic must never treat it as wear and work around it.
* `FlashError`: a hardware fault the update logic under test must survive (power loss,
  worn-out sectors, injected write failures).

Every message names the address and what was expected.
"""

from __future__ import annotations

from tinyswap.errors import TinySwapError
from tinyswap.image import ImageWriteError
from tinyswap.package import PackageError, PackageFormatError


class FlashMisuseError(TinySwapError):
    """Base class of the programmer errors the simulated flash refuses (never a hardware fault)."""


class FlashGeometryError(FlashMisuseError, ValueError):
    """A flash geometry, partition or fault plan is inconsistent (bad sizes, alignment, erase value)."""


class AlignmentError(FlashMisuseError):
    """A program is not aligned to the write unit, or an erase does not cover whole sectors."""


class OutOfRangeError(FlashMisuseError):
    """An access falls (partly) outside the device or the partition it was made through."""


class UnerasedWriteError(FlashMisuseError):
    """A program targets a write unit that was programmed since its last erase (program-only-erased rule)."""


class FlashError(TinySwapError):
    """Base class of the hardware faults of the simulated flash (what update code must survive)."""


class WornOutError(FlashError):
    """An operation touched a sector whose erase-cycle budget is used up (base of the bad-block errors)."""


class BadBlockProgramError(WornOutError):
    """A program into a worn-out sector failed (littlefs emubd PROGERROR)."""


class BadBlockEraseError(WornOutError):
    """An erase of a worn-out sector failed (littlefs emubd ERASEERROR)."""


class BadBlockReadError(WornOutError):
    """A read from a worn-out sector failed (littlefs emubd READERROR)."""


class InjectedWriteError(FlashError):
    """An injected failure refused a program or erase in a failing address range; nothing changed."""


class PowerLoss(FlashError):
    """Power was cut; the flash refuses every operation until `power_on()`."""


class ProfileError(TinySwapError, ValueError):
    """A storage or device profile is inconsistent, or does not match the counters it is given."""


class StoreError(TinySwapError):
    """Base class of the errors of the LittleFS adapter store."""


class StoreNotFoundError(StoreError, KeyError):
    """No adapter of that name is in the store."""


class StoreFullError(StoreError):
    """The store has no room left for the data being written."""


class StoreIOError(StoreError):
    """The flash failed an operation littlefs could not work around (read error, injected failure)."""


class StoreCorruptError(StoreError):
    """The store cannot be mounted, or littlefs reported corruption or an I/O error."""


class StoreNameError(StoreError, ValueError):
    """An adapter name is empty, too long, reserved or contains a path separator."""


# ------------------------------------------------------------------ model image and metadata

class ModelImageError(ImageWriteError):
    """A write into the flash-backed model image was refused or failed (also a `tinyswap`
    `ImageWriteError`, so the swap manager's callers can catch either)."""


class SlotAlignmentError(ModelImageError, FlashMisuseError):
    """A slot range does not cover whole flash sectors (erasing it would erase base-model bytes),
    or lies outside the image: the bundle does not fit this part, not a hardware fault."""


class SlotWriteError(ModelImageError, FlashError):
    """The flash failed while a slot was erased or programmed (worn-out sector, injected failure)."""


class SlotWornError(SlotWriteError):
    """A slot's sector used up its erase budget: the write is refused before anything is erased."""


class MetadataError(TinySwapError):
    """Base class of the errors of the metadata partition (the device's committed state)."""


class MetadataWriteError(MetadataError):
    """A metadata commit did not land and verify; the previous record still stands."""


class WearNotRecordedError(SlotWriteError, MetadataWriteError):
    """The sector's previous erase is not yet in the metadata (its commit failed): erasing it
    again could pass the erase budget unnoticed after a reboot, so the write is refused."""


class MetadataFullError(MetadataWriteError):
    """A metadata record is larger than one metadata area."""


class MetadataRecordError(MetadataError):
    """A valid metadata record (its digest checks) does not have the device record's form."""


class MetadataMissingError(MetadataError):
    """No valid metadata record exists (the device was never provisioned, or every area is unreadable)."""


# ------------------------------------------------------------------ device

class DeviceError(TinySwapError):
    """Base class of the simulated device's own refusals."""


class DeviceStateError(DeviceError):
    """The device is used out of order: not booted, power off, or an unknown installed package."""


class BaseModelError(DeviceError):
    """The model partition does not hold the base model the slot map describes (digest mismatch)."""


class RamBudgetError(DeviceError):
    """The interpreter arena, the package cache or the RAM model copy exceed the device's RAM budget."""


class LayoutError(DeviceError, ValueError):
    """The partitions do not fit the flash, or the store has no uniform-sector region."""


class DeviceClassError(PackageError):
    """The package names device classes this device does not belong to (SUIT class identifier)."""


class PackageTooLargeError(PackageFormatError):
    """The package is larger than the device accepts (its RAM cache must hold it to verify and stage it)."""


class TrainingError(DeviceError):
    """On-device training refused (`training.py`, `personalise.py`); nothing was written."""


class TrainingConfigError(TrainingError, ValueError):
    """A training parameter (epochs, rank, batch, learning rate, seed, samples) is out of range."""


class TrainingPlanError(TrainingError):
    """The bundle has no slot the device can train (a LoRA on the layer feeding the softmax)."""


class TrainingMemoryError(TrainingError, RamBudgetError):
    """The training step would not fit its RAM budget."""


class StreamRamError(RamBudgetError):
    """Stream state would not fit the RAM the device has left for it (`device_streams.py`)."""
