"""Errors the simulated device raises, under tinyswap's one hierarchy (`TinySwapError`).

Flash errors come in two kinds. Misuse (misaligned, out of range, unerased write) is a
driver bug: real parts silently corrupt data or latch an error flag, the simulator refuses
loudly. Faults (power loss, worn-out sectors, injected failures) are what the update logic
under test must survive. Every message names the address and what was expected.
"""

from __future__ import annotations

from tinyswap.errors import TinySwapError
from tinyswap.image import ImageWriteError
from tinyswap.package import PackageError, PackageFormatError


class FlashError(TinySwapError):
    """Base class of every error the simulated flash raises."""


class FlashGeometryError(FlashError, ValueError):
    """A flash geometry, partition or fault plan is inconsistent (bad sizes, alignment, erase value)."""


class AlignmentError(FlashError):
    """A program is not aligned to the write unit, or an erase does not cover whole sectors."""


class OutOfRangeError(FlashError):
    """An access falls (partly) outside the device or the partition it was made through."""


class UnerasedWriteError(FlashError):
    """A program targets a write unit that was programmed since its last erase (program-only-erased rule)."""


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

class ModelImageError(FlashError, ImageWriteError):
    """A write into the flash-backed model image was refused or failed (also a `tinyswap`
    `ImageWriteError`, so the swap manager's callers can catch either)."""


class SlotAlignmentError(ModelImageError):
    """A slot range does not cover whole flash sectors: erasing it would erase base-model bytes."""


class SlotWriteError(ModelImageError):
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
