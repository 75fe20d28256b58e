"""What decrypting an encrypted adapter package costs the device's CPU (`tinyswap.envelope`).

Opening a package does, per recipient entry tried, one X25519 scalar multiplication plus an
HKDF-SHA256 and an AES key unwrap (RFC 3394, 12 block operations), and then one AES-256-GCM
pass over the ciphertext. The device charges `decrypt_seconds` to its timeline as a "decrypt"
event (category "crypto") wherever the swap manager opens a package: install, a swap from the
store, a cache miss, boot's restore.

ESTIMATES, not measurements, per core (software implementations unless said; a part with a
crypto accelerator, e.g. an STM32H7 "with crypto" CRYP block, is much faster per byte):

* AES-256-GCM on Cortex-M4: table-based AES-128 in CTR mode is about 34 cycles/byte in the
  published Cortex-M3/M4 assembly (Schwabe and Stoffelen, "All the AES You Need on Cortex-M3
  and M4", SAC 2016; recalled, not re-read for this file); AES-256 runs 14 rounds instead of
  10 (x1.4, ~48 cycles/byte); a 4-bit-table GHASH adds on the order of 40 cycles/byte. ASSUMED
  total: 90 cycles/byte. Constant-time bitsliced AES would be about three times slower.
* X25519 on Cortex-M4: about 0.9 million cycles for one scalar multiplication with an
  assembly field arithmetic (Fujii and Aranha, "Curve25519 for the Cortex-M4 and beyond",
  LATINCRYPT 2017, report ~907k; recalled, not re-read). HKDF (about eight SHA-256
  compressions) and the key unwrap add ~40k cycles, folded into the per-agreement figure.
* Cortex-M7 and M55: the M4 figures divided by the M7/M4 per-MHz ratio used for inference
  (`profiles.M7_OVER_M4_PER_MHZ`, ~1.47; Helium has no AES instructions, so M55 = M7).
* Cortex-A53 class: ARMv8 Cryptography Extensions (AESE/PMULL) run AES-GCM at a few cycles
  per byte; ASSUMED 3 cycles/byte, and 300k cycles per X25519 with 64-bit field arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyswap.envelope import DecryptWork
from tinyswap.firmware_sim.profiles import M7_OVER_M4_PER_MHZ, DeviceProfile

M4_AES256_GCM_CYCLES_PER_BYTE = 90.0
M4_KEY_AGREEMENT_CYCLES = 907_000 + 40_000  # X25519 + HKDF-SHA256 + AES key unwrap


@dataclass(frozen=True)
class CryptoCost:
    """A core's cost for the envelope's primitives (see the estimates above)."""

    aes_gcm_cycles_per_byte: float
    key_agreement_cycles: float  # one recipient entry: X25519, HKDF, key unwrap
    source: str


M4_CRYPTO = CryptoCost(M4_AES256_GCM_CYCLES_PER_BYTE, M4_KEY_AGREEMENT_CYCLES,
                       "software AES-256-GCM and X25519 on Cortex-M4 (published figures, estimate)")
M7_CRYPTO = CryptoCost(M4_AES256_GCM_CYCLES_PER_BYTE / M7_OVER_M4_PER_MHZ,
                       M4_KEY_AGREEMENT_CYCLES / M7_OVER_M4_PER_MHZ, "M4 figures / CoreMark-per-MHz ratio M7/M4")
A53_CRYPTO = CryptoCost(3.0, 300_000 + 20_000, "ASSUMED: ARMv8 Crypto Extensions AES-GCM, 64-bit X25519")
#: By `CpuProfile.name`.
CRYPTO_COSTS: dict[str, CryptoCost] = {
    "cortex-m4": M4_CRYPTO, "cortex-m7": M7_CRYPTO, "cortex-m55": M7_CRYPTO, "cortex-a53": A53_CRYPTO,
}


def decrypt_seconds(profile: DeviceProfile, work: DecryptWork) -> float:
    """Seconds the profile's CPU spends on `work` (an unknown core is charged as a Cortex-M4:
    the conservative end)."""
    cost = CRYPTO_COSTS.get(profile.cpu.name, M4_CRYPTO)
    cycles = work.key_agreements * cost.key_agreement_cycles + work.ciphertext_bytes * cost.aes_gcm_cycles_per_byte
    return cycles / profile.clock_hz


__all__ = ["CRYPTO_COSTS", "CryptoCost", "decrypt_seconds"]
