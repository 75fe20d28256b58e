/*
 * tinyswap_fw.h: install signed adapter packages (.tsap) into the slots of a TFLite model held
 * in flash, on the device. Portable C99: no heap, no stdio, no libc beyond memcpy/memset/memcmp,
 * no dependency but the port struct below, which the firmware fills.
 *
 * What it does is what the Python swap path does (tinyswap/package.py, tinyswap/swap/slot_bytes.py):
 *
 *   1. verify a package completely before writing anything: format bounds (magic, format
 *      version 1 only: an encrypted version-2 package is refused with TSFW_E_UNSUPPORTED_VERSION;
 *      metadata length, payload length, no trailing bytes), the SHA-256 digest, the signer's key
 *      id among the trusted keys, the Ed25519 signature over every byte before it, the base-model
 *      digest, the metadata JSON (a bounded scanner: depth <= 64, integers <= 64 digits, UTF-8),
 *      the tensor table (tiles the payload in order) against the slot layout (names, shapes,
 *      dtypes), and the anti-rollback sequence of the adapter's name;
 *   2. write the target slot's whole range exactly as tinyswap's SlotBytes builds it: zeros, the
 *      frame bytes (the base model's own bytes inside the range) at their offsets, each tensor's
 *      bytes at its offset; erase the range's sectors, program it in 256-byte chunks (chunks
 *      that are all the erase value are skipped, as the erase left them), read it back, compare;
 *   3. only then commit the slot table record (two alternating areas, newest valid wins).
 *
 * Nothing is half-applied: a failure before the record commit leaves the record as it was, and
 * boot (tinyswap_fw_boot) rewrites blank any slot whose bytes disagree with the record.
 *
 * Where the device is stricter than the Python parser (its own bounds, refused with
 * TSFW_E_FORMAT before anything is written): the adapter name and the version string are at most
 * 31 bytes of UTF-8 without NUL (the record's fields); a package lists at most
 * TSFW_MAX_PACKAGE_TENSORS tensors; a version-2 package is refused by its version before any
 * other check (TSFW_E_UNSUPPORTED_VERSION). Otherwise each refusal is the status of the Python
 * exception class, checks in the same order; the JSON bounds are Python's (tinyswap.files: depth
 * 64, integers of at most 64 digits) and duplicate keys resolve as in Python (the last wins).
 *
 * Target slot: the caller names it (0..S-1), or passes TSFW_ANY_SLOT and the code takes the
 * lowest-numbered empty slot (TSFW_E_NO_SLOT if every slot holds an adapter: eviction is the
 * application's policy, so it names the slot to overwrite).
 *
 * Test then confirm (as MCUboot): an install with TSFW_INSTALL_TRIAL keeps the confirmed state
 * in the record beside the new one; tinyswap_fw_confirm makes the trial permanent, and a boot
 * that finds an unconfirmed trial reverts to the confirmed state. A slot the trial overwrote is
 * then rewritten blank (its old bytes are gone: the application re-installs from its own store).
 * An install without the flag is permanent and confirms a pending trial with it.
 *
 * Record (the record area is split into TSFW_RECORD_AREAS = 2 equal areas of whole sectors; a
 * commit erases and programs the area not holding the current record, reads it back and
 * compares; boot takes the valid record with the highest commit sequence; the erase is skipped
 * when tinyswap_fw_prepare erased that area since the last boot or commit, the idle step the
 * simulator's device runs too). Little-endian:
 *
 *   offset        size  field
 *   0             4     magic "TSFR"
 *   4             2     record format version (1)
 *   6             2     record length L in bytes (including the trailing digest)
 *   8             8     commit sequence (u64; one above the highest seen at boot)
 *   16            1     number of slots S (the layout's)
 *   17            1     number of name entries N (TSFW_MAX_NAMES)
 *   18            1     flags: bit 0 = trial (the confirmed state below differs and is pending)
 *   19            1     0
 *   20            E     current state: S slot entries (144 bytes each), then N name entries
 *                       (40 bytes each); E = 144 S + 40 N
 *   20+E          E     confirmed state (same layout; equal to the current one when not trial)
 *   20+2E         32    SHA-256 of bytes [0, 20+2E)
 *
 *   slot entry (144 bytes):
 *   0    1   state: 0 empty (zeros + frame), 1 installed
 *   1    7   0
 *   8    8   the package's sequence (u64)
 *   16   32  package digest (the package's SHA-256 field: tinyswap's content_digest)
 *   48   32  content digest: SHA-256 of the slot's tensor bytes, concatenated in layout order
 *            (for an empty slot: of the zeros) - the definition tinyswap's SlotBytes uses
 *   80   32  adapter name, UTF-8, NUL-padded (at most 31 bytes)
 *   112  32  version string, UTF-8, NUL-padded (at most 31 bytes)
 *
 *   name entry (40 bytes): name (32, NUL-padded; all zero = unused), last accepted sequence (u64)
 *
 * Padded with the erase value to the program unit. A torn or half-erased record fails its digest
 * and is ignored. The record holds no pointer and no float: any build with the same TSFW_MAX_NAMES
 * and slot count reads it.
 *
 * Memory: no heap. The caller provides
 *   - the context (tsfw_t, sizeof: tinyswap_fw_context_bytes(); holds two record copies),
 *   - a workspace of at least tinyswap_fw_workspace_bytes(layout) bytes (the serialised record
 *     padded to the program unit plus a 256-byte read-back chunk, or three 256-byte chunks,
 *     whichever is larger),
 *   - the package bytes in addressable memory (RAM or memory-mapped flash), read in place.
 * No recursion and no large local: every table lives in the context or the workspace, so the
 * deepest call chain (tinyswap_fw_install) needs 520 bytes of stack on Cortex-M4 (arm-none-eabi-gcc
 * 12 -Os) and 784 bytes on x86-64 (gcc 12 -O2), plus what the port's callbacks use (measured with
 * -fcallgraph-info=su; tests/tinyswap/export/test_firmware.py keeps it under 1 KB).
 * Measured with the default bounds (8 slots, 8 names, 32 package tensors): the context is 8,600
 * bytes on Cortex-M4 (5,144 with -DTSFW_MAX_SLOTS=2), the workspace for a 2-slot bundle 1,780
 * bytes, the code 9.7 KB of .text (Cortex-M4, -Os).
 *
 * The SHA-256 port is incremental (begin/update/finish, one hash at a time, its state kept by the
 * port): boot hashes slot contents straight from flash in workspace-sized chunks, never holding a
 * whole slot in RAM, and every crypto library (PSA Crypto psa_hash_*, TinyCrypt tc_sha256_*,
 * Monocypher-with-a-SHA-256, mbedTLS) offers that shape. Ed25519 verification is one call over
 * the package bytes in place.
 */
#ifndef TINYSWAP_FW_H_
#define TINYSWAP_FW_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TSFW_MAX_SLOTS
#define TSFW_MAX_SLOTS 8u /* slots a record can describe (a layout with more is refused) */
#endif
#ifndef TSFW_MAX_NAMES
#define TSFW_MAX_NAMES 8u /* adapter names whose anti-rollback sequence the record keeps */
#endif
#ifndef TSFW_MAX_PACKAGE_TENSORS
#define TSFW_MAX_PACKAGE_TENSORS 32u /* tensor table entries a package may list */
#endif
#define TSFW_MAX_RANK 8u
#define TSFW_NAME_BYTES 32u    /* name field: at most 31 bytes of UTF-8 and a NUL */
#define TSFW_VERSION_BYTES 32u /* version field: at most 31 bytes of UTF-8 and a NUL */
#define TSFW_RECORD_AREAS 2u
#define TSFW_CHUNK_BYTES 256u /* bytes per program command (one NOR page) */
#define TSFW_ANY_SLOT (-1)
#define TSFW_INSTALL_TRIAL 1u

/* Every function returns one of these. The package refusals mirror tinyswap/package.py's
 * exception classes (named beside each); values are stable (tinyswap.export.fw_host.FwStatus). */
typedef enum tsfw_status {
    TSFW_OK = 0,
    TSFW_E_FORMAT = 1,              /* PackageFormatError: malformed, truncated, oversized, trailing bytes */
    TSFW_E_DIGEST = 2,              /* PackageDigestError */
    TSFW_E_UNKNOWN_KEY = 3,         /* UnknownKeyError */
    TSFW_E_SIGNATURE = 4,           /* SignatureError */
    TSFW_E_WRONG_BASE = 5,          /* WrongBaseModelError */
    TSFW_E_SLOT_LAYOUT = 6,         /* SlotLayoutError: a slot tensor named twice */
    TSFW_E_UNKNOWN_LAYER = 7,       /* UnknownLayerError */
    TSFW_E_MISSING_TENSORS = 8,     /* MissingSlotTensorsError */
    TSFW_E_SHAPE = 9,               /* SlotShapeError */
    TSFW_E_ROLLBACK = 10,           /* RollbackError */
    TSFW_E_UNSUPPORTED_VERSION = 11, /* format version 2 (encrypted; SealedPackageError): decrypt first */
    TSFW_E_FLASH = 12,              /* a port flash call failed (power cut, worn sector) */
    TSFW_E_VERIFY = 13,             /* bytes read back differ from the bytes programmed */
    TSFW_E_NO_SLOT = 14,            /* TSFW_ANY_SLOT and no slot is empty */
    TSFW_E_NAMES_FULL = 15,         /* a new adapter name and no free anti-rollback entry */
    TSFW_E_ARGUMENT = 16,           /* a NULL pointer, a slot out of range, a weight out of range */
    TSFW_E_WORKSPACE = 17,          /* workspace smaller than tinyswap_fw_workspace_bytes() */
    TSFW_E_GEOMETRY = 18,           /* layout and flash do not fit (slot range not sector aligned, ...) */
    TSFW_E_CRYPTO = 19,             /* the port's SHA-256 failed */
    TSFW_E_STATE = 20,              /* called before tinyswap_fw_boot succeeded */
    TSFW_E_NOT_FOUND = 21           /* no slot holds the adapter named */
} tsfw_status_t;

/* Flash callbacks: offsets relative to the area, return 0 on success, anything else on failure. */
typedef int (*tsfw_read_fn)(void *ctx, uint32_t offset, void *buf, uint32_t len);
typedef int (*tsfw_erase_fn)(void *ctx, uint32_t offset, uint32_t len); /* whole sectors */
typedef int (*tsfw_program_fn)(void *ctx, uint32_t offset, const void *buf, uint32_t len);

typedef struct tsfw_flash_area {
    tsfw_read_fn read;
    tsfw_erase_fn erase;
    tsfw_program_fn program;
    uint32_t size;         /* bytes in the area */
    uint32_t sector_size;  /* erase unit (uniform within the area) */
    uint32_t program_unit; /* program granularity, a power of two <= 256 */
    uint8_t erase_value;   /* 0xFF (NOR) or 0x00 */
} tsfw_flash_area_t;

typedef struct tsfw_port {
    void *ctx; /* handed to every callback */
    tsfw_flash_area_t model;  /* the model partition: model.tflite from offset 0, sector aligned */
    tsfw_flash_area_t record; /* the record partition: TSFW_RECORD_AREAS equal runs of sectors */
    int (*sha256_begin)(void *ctx);
    int (*sha256_update)(void *ctx, const void *data, size_t len);
    int (*sha256_finish)(void *ctx, uint8_t out[32]);
    /* 0 if `sig` is a valid Ed25519 signature of msg[0, len) under `pub`, nonzero otherwise. */
    int (*ed25519_verify)(void *ctx, const uint8_t pub[32], const uint8_t *msg, size_t len, const uint8_t sig[64]);
} tsfw_port_t;

/* ---- the slot layout (generated per bundle into tinyswap_layout.c) ---- */
typedef enum tsfw_dtype { TSFW_DTYPE_INT8 = 1, TSFW_DTYPE_INT32 = 2 } tsfw_dtype_t;

typedef struct tsfw_tensor {
    const char *layer;
    const char *role;
    uint32_t offset; /* absolute, in model.tflite */
    uint32_t length;
    uint8_t dtype;   /* tsfw_dtype_t */
    uint8_t rank;
    uint32_t shape[TSFW_MAX_RANK];
} tsfw_tensor_t;

typedef struct tsfw_frame_run {
    uint32_t offset; /* within the slot's range */
    uint32_t length;
    const uint8_t *data;
} tsfw_frame_run_t;

typedef struct tsfw_slot {
    uint32_t offset; /* absolute, in model.tflite */
    uint32_t length;
    const tsfw_tensor_t *tensors; /* layout order (the same layers/roles/shapes in every slot) */
    uint32_t num_tensors;
    const tsfw_frame_run_t *frame;
    uint32_t num_frame_runs;
    uint32_t gate_input_index; /* graph input of this slot's gate */
    double gate_scale;
    int32_t gate_zero_point;
} tsfw_slot_t;

typedef struct tsfw_layout {
    uint32_t model_bytes;
    uint8_t base_digest[32];
    const char *base_digest_hex; /* 64 lowercase hex digits, as packages spell it */
    uint32_t num_slots;
    const tsfw_slot_t *slots;
    double gate_max;
} tsfw_layout_t;

/* ---- the record, in RAM ---- */
typedef struct tsfw_slot_entry {
    uint8_t installed;
    uint64_t sequence;
    uint8_t digest[32];
    uint8_t content[32];
    char name[TSFW_NAME_BYTES];
    char version[TSFW_VERSION_BYTES];
} tsfw_slot_entry_t;

typedef struct tsfw_name_entry {
    char name[TSFW_NAME_BYTES];
    uint64_t sequence;
} tsfw_name_entry_t;

typedef struct tsfw_state {
    tsfw_slot_entry_t slots[TSFW_MAX_SLOTS];
    tsfw_name_entry_t names[TSFW_MAX_NAMES];
} tsfw_state_t;

typedef struct tsfw_record {
    uint64_t sequence;
    uint8_t trial;
    tsfw_state_t current;
    tsfw_state_t confirmed;
} tsfw_record_t;

/* A package's tensor table entry, as parsed (internal: the context holds the table, so the
 * stack never does). */
typedef struct tsfw_json_span { const uint8_t *p; const uint8_t *e; } tsfw_json_span_t;

typedef struct tsfw_package_tensor {
    tsfw_json_span_t layer, role; /* JSON string tokens inside the metadata */
    uint8_t dtype, rank;
    uint8_t shape_big; /* rank above TSFW_MAX_RANK or a dimension above 32 bits */
    uint32_t shape[TSFW_MAX_RANK];
    uint64_t offset, length; /* within the payload */
} tsfw_package_tensor_t;

typedef struct tsfw_package_info {
    char name[TSFW_NAME_BYTES];
    char version[TSFW_VERSION_BYTES];
    uint64_t sequence;
    uint8_t digest[32];
    uint8_t content[32]; /* SHA-256 of its tensor bytes in layout order */
} tsfw_package_info_t;

typedef struct tsfw_parsed {
    const uint8_t *payload;
    uint64_t payload_len;
    const uint8_t *digest, *key_id, *signature;
    size_t signed_len;
    tsfw_json_span_t name, base;
    uint64_t sequence;
    uint32_t num_tensors;
    tsfw_package_tensor_t t[TSFW_MAX_PACKAGE_TENSORS];
    uint32_t match[TSFW_MAX_PACKAGE_TENSORS]; /* layout tensor i -> package tensor match[i] */
    tsfw_package_info_t info;
} tsfw_parsed_t;

typedef struct tsfw {
    const tsfw_port_t *port;
    const tsfw_layout_t *layout;
    const uint8_t (*keys)[32];
    size_t num_keys;
    uint8_t *ws;
    size_t ws_len;
    tsfw_record_t rec;  /* the committed record */
    tsfw_record_t next; /* the record a commit is building */
    int area;           /* area holding rec, -1: none */
    int erased_area;    /* record area erased by tinyswap_fw_prepare since boot, -1: none */
    uint64_t next_sequence;
    uint32_t dirty;     /* slots whose bytes a failed write left undefined (repaired at boot) */
    uint8_t booted;
    tsfw_parsed_t pkg;  /* the package being verified */
} tsfw_t;

typedef struct tsfw_boot_report {
    uint8_t record_found;    /* a valid record was read */
    uint8_t reverted;        /* an unconfirmed trial was reverted */
    uint32_t repaired_slots; /* bit s: slot s was rewritten blank (its bytes disagreed with the record) */
    uint64_t record_sequence;
} tsfw_boot_report_t;

const char *tinyswap_fw_status_name(tsfw_status_t status);
size_t tinyswap_fw_context_bytes(void);
size_t tinyswap_fw_workspace_bytes(const tsfw_layout_t *layout);
size_t tinyswap_fw_record_bytes(const tsfw_layout_t *layout);

/* Check the layout against the port's geometry; no flash access. `keys`: the trusted raw Ed25519
 * public keys (kept by reference). */
tsfw_status_t tinyswap_fw_init(tsfw_t *fw, const tsfw_port_t *port, const tsfw_layout_t *layout,
                               const uint8_t (*keys)[32], size_t num_keys, uint8_t *workspace, size_t workspace_len);
/* Factory provisioning: erase every record area (no record: every slot empty). */
tsfw_status_t tinyswap_fw_format(tsfw_t *fw);
/* Read the record, revert an unconfirmed trial, rewrite blank every slot whose bytes disagree
 * with it (and record it empty). `report` may be NULL. */
tsfw_status_t tinyswap_fw_boot(tsfw_t *fw, tsfw_boot_report_t *report);
/* Verify only: every check of an install (anti-rollback against the booted record), nothing
 * written. `info` may be NULL. */
tsfw_status_t tinyswap_fw_verify(tsfw_t *fw, const uint8_t *package, size_t len, tsfw_package_info_t *info);
/* Verify, write the slot (`slot` or TSFW_ANY_SLOT), read back, commit. `out_slot`/`info` may be NULL. */
tsfw_status_t tinyswap_fw_install(tsfw_t *fw, const uint8_t *package, size_t len, int slot, uint32_t flags,
                                  int *out_slot, tsfw_package_info_t *info);
/* Idle step: erase the record area the next commit will program (the one not holding the
 * current record), so that the commit on an install's request path only programs. Trusted until
 * the next boot or commit only: after a reboot nothing is known erased (an erased byte and one
 * programmed with the erase value read alike) and a commit erases first, as without this call.
 * A cut during it leaves the current record standing. */
tsfw_status_t tinyswap_fw_prepare(tsfw_t *fw);
/* Make a pending trial permanent (TSFW_OK also when there is none). */
tsfw_status_t tinyswap_fw_confirm(tsfw_t *fw);
/* Rewrite a slot blank (zeros + frame) and record it empty. */
tsfw_status_t tinyswap_fw_clear_slot(tsfw_t *fw, int slot);
/* The lowest slot holding adapter `name` (TSFW_E_NOT_FOUND if none). */
tsfw_status_t tinyswap_fw_slot_of(const tsfw_t *fw, const char *name, int *slot);
/* A copy of slot `slot`'s entry in the committed record. */
tsfw_status_t tinyswap_fw_slot_entry(const tsfw_t *fw, int slot, tsfw_slot_entry_t *entry);
/* The int8 gate input of slot `slot` for a weight in [0, gate_max] given in Q16.16
 * (65536 = 1.0): round-half-even(weight / scale) + zero point, clipped to int8. */
tsfw_status_t tinyswap_fw_gate_value(const tsfw_layout_t *layout, int slot, uint32_t weight_q16, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TINYSWAP_FW_H_ */
