// A host program in the shape of a firmware: TensorFlow Lite Micro runs a tinyswap bundle's model
// from a writable "flash" buffer, and the bundle's C install code (tinyswap_fw.c, through a port
// filled here) installs an adapter package into a slot of that very buffer while the interpreter
// stays alive. Built from a TFLM source tree by tests/tinyswap/export/test_tflm_host_build.py.
// The port's SHA-256 and Ed25519 come from OpenSSL's libcrypto (what a host has; a device fills
// the same port from PSA Crypto, Monocypher or TinyCrypt).
//
//   install_runner KEY.raw PACKAGE SLOT IN_BEFORE OUT_BEFORE IN_AFTER OUT_AFTER
//
// KEY.raw is the signer's raw 32-byte Ed25519 public key. The program invokes the model on
// IN_BEFORE (every input tensor's bytes, in input order) and writes OUT_BEFORE, installs PACKAGE
// into SLOT (permanent), then invokes the same interpreter on IN_AFTER and writes OUT_AFTER.
// Prints "installed SLOT" on success; a refused package prints its status name and exits 9.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <openssl/evp.h>

#include "model_data.h"
#include "tinyswap_fw.h"
#include "tinyswap_layout.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace {

constexpr uint32_t kSector = 4096;
constexpr uint32_t kModelArea = (TINYSWAP_MODEL_BYTES + kSector - 1) / kSector * kSector;
alignas(16) uint8_t g_flash[kModelArea];       // the model partition (XIP on a device)
uint8_t g_record[2 * kSector];                 // the record partition: two one-sector areas
alignas(16) uint8_t g_arena[TINYSWAP_ARENA_BYTES];
alignas(8) uint8_t g_workspace[64 * 1024];
EVP_MD_CTX* g_hash = nullptr;

int area_read(uint8_t* base, uint32_t size, uint32_t off, void* buf, uint32_t len) {
  if (off > size || len > size - off) return 1;
  std::memcpy(buf, base + off, len);
  return 0;
}
int area_erase(uint8_t* base, uint32_t size, uint32_t off, uint32_t len) {
  if (off % kSector || len % kSector || off > size || len > size - off) return 1;
  std::memset(base + off, 0xFF, len);
  return 0;
}
int area_program(uint8_t* base, uint32_t size, uint32_t off, const void* buf, uint32_t len) {
  if (off > size || len > size - off) return 1;
  const uint8_t* src = static_cast<const uint8_t*>(buf);
  for (uint32_t i = 0; i < len; ++i) base[off + i] &= src[i];  // NOR: programming clears bits only
  return 0;
}
int model_read(void*, uint32_t o, void* b, uint32_t n) { return area_read(g_flash, kModelArea, o, b, n); }
int model_erase(void*, uint32_t o, uint32_t n) { return area_erase(g_flash, kModelArea, o, n); }
int model_program(void*, uint32_t o, const void* b, uint32_t n) { return area_program(g_flash, kModelArea, o, b, n); }
int record_read(void*, uint32_t o, void* b, uint32_t n) { return area_read(g_record, sizeof g_record, o, b, n); }
int record_erase(void*, uint32_t o, uint32_t n) { return area_erase(g_record, sizeof g_record, o, n); }
int record_program(void*, uint32_t o, const void* b, uint32_t n) {
  return area_program(g_record, sizeof g_record, o, b, n);
}
int sha_begin(void*) { return EVP_DigestInit_ex(g_hash, EVP_sha256(), nullptr) != 1; }
int sha_update(void*, const void* d, size_t n) { return EVP_DigestUpdate(g_hash, d, n) != 1; }
int sha_finish(void*, uint8_t out[32]) {
  unsigned int len = 0;
  return EVP_DigestFinal_ex(g_hash, out, &len) != 1 || len != 32;
}
int ed_verify(void*, const uint8_t pub[32], const uint8_t* msg, size_t len, const uint8_t sig[64]) {
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub, 32);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  int ok = key != nullptr && ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
           EVP_DigestVerify(ctx, sig, 64, msg, len) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return ok ? 0 : 1;
}

std::vector<uint8_t> read_file(const char* path) {
  std::vector<uint8_t> data;
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return data;
  int c;
  while ((c = std::fgetc(f)) != EOF) data.push_back(static_cast<uint8_t>(c));
  std::fclose(f);
  return data;
}

bool run(tflite::MicroInterpreter& interpreter, const char* in_path, const char* out_path) {
  std::vector<uint8_t> in = read_file(in_path);
  size_t pos = 0;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* t = interpreter.input(i);
    if (pos + t->bytes > in.size()) return false;
    std::memcpy(t->data.raw, in.data() + pos, t->bytes);
    pos += t->bytes;
  }
  if (pos != in.size() || interpreter.Invoke() != kTfLiteOk) return false;
  std::FILE* out = std::fopen(out_path, "wb");
  if (out == nullptr) return false;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    if (std::fwrite(t->data.raw, 1, t->bytes, out) != t->bytes) return false;
  }
  return std::fclose(out) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: install_runner KEY.raw PACKAGE SLOT IN_BEFORE OUT_BEFORE IN_AFTER OUT_AFTER\n");
    return 2;
  }
  std::vector<uint8_t> key = read_file(argv[1]), package = read_file(argv[2]);
  if (key.size() != 32 || package.empty()) return 2;
  const int slot = std::atoi(argv[3]);
  std::memset(g_flash, 0xFF, sizeof g_flash);
  std::memcpy(g_flash, g_model, TINYSWAP_MODEL_BYTES);
  std::memset(g_record, 0xFF, sizeof g_record);
  g_hash = EVP_MD_CTX_new();

  tflite::MicroMutableOpResolver<32> resolver;
#define TINYSWAP_OP(add) \
  if (resolver.add() != kTfLiteOk) return 4;
#include "ops.inc"
#undef TINYSWAP_OP
  tflite::MicroInterpreter interpreter(tflite::GetModel(g_flash), resolver, g_arena, sizeof g_arena);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 5;
  if (!run(interpreter, argv[4], argv[5])) return 6;

  static const tsfw_port_t port = {
      nullptr,
      {model_read, model_erase, model_program, kModelArea, kSector, 1, 0xFF},
      {record_read, record_erase, record_program, sizeof g_record, kSector, 1, 0xFF},
      sha_begin, sha_update, sha_finish, ed_verify};
  uint8_t trusted[1][32];
  std::memcpy(trusted[0], key.data(), 32);
  static tsfw_t fw;
  if (tinyswap_fw_workspace_bytes(&tinyswap_layout) > sizeof g_workspace) return 3;
  tsfw_status_t st = tinyswap_fw_init(&fw, &port, &tinyswap_layout, trusted, 1, g_workspace, sizeof g_workspace);
  if (st == TSFW_OK) st = tinyswap_fw_format(&fw);
  tsfw_boot_report_t boot;
  if (st == TSFW_OK) st = tinyswap_fw_boot(&fw, &boot);
  int where = -1;
  if (st == TSFW_OK) st = tinyswap_fw_install(&fw, package.data(), package.size(), slot, 0u, &where, nullptr);
  if (st != TSFW_OK) {
    std::printf("refused %s\n", tinyswap_fw_status_name(st));
    return 9;
  }
  // The interpreter was built before the install and is not touched: the reference kernels read
  // the slot's weights from the model on every Invoke().
  if (!run(interpreter, argv[6], argv[7])) return 7;
  std::printf("installed %d\n", where);
  EVP_MD_CTX_free(g_hash);
  return 0;
}
