// A host program that runs a tinyswap bundle's model in TensorFlow Lite Micro, built from a TFLM
// source tree (tests/tinyswap/export/test_tflm_host_build.py). The model is the bundle's own C
// array (`g_model`, model_data.cc); the operators come from ops.inc, which the test writes from
// the model's operator list (one `TINYSWAP_OP(AddConv2D)` line each).
//
//   runner INPUTS OUTPUTS
//
// INPUTS holds every input tensor's bytes, in input order; OUTPUTS receives every output
// tensor's bytes, in output order. The arena is the bundle's TINYSWAP_ARENA_BYTES when the
// header defines it. Prints "arena_used_bytes N" on success; exits non-zero on any failure.
#include <cstdio>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef TINYSWAP_ARENA_BYTES
#define TINYSWAP_ARENA_BYTES (512u * 1024u)
#endif

namespace {
alignas(16) uint8_t g_arena[TINYSWAP_ARENA_BYTES];
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: runner INPUTS OUTPUTS\n");
    return 2;
  }
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    std::fprintf(stderr, "schema version %u\n", static_cast<unsigned>(model->version()));
    return 3;
  }
  tflite::MicroMutableOpResolver<32> resolver;
#define TINYSWAP_OP(add)                        \
  if (resolver.add() != kTfLiteOk) {            \
    std::fprintf(stderr, "cannot add %s\n", #add); \
    return 4;                                   \
  }
#include "ops.inc"
#undef TINYSWAP_OP
  tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    std::fprintf(stderr, "AllocateTensors failed with a %u-byte arena\n", static_cast<unsigned>(sizeof(g_arena)));
    return 5;
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  if (in == nullptr) return 6;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* t = interpreter.input(i);
    if (std::fread(t->data.raw, 1, t->bytes, in) != t->bytes) {
      std::fprintf(stderr, "input %u: short read\n", static_cast<unsigned>(i));
      return 6;
    }
  }
  if (std::fgetc(in) != EOF) {
    std::fprintf(stderr, "more input bytes than the model's inputs hold\n");
    return 6;
  }
  std::fclose(in);
  if (interpreter.Invoke() != kTfLiteOk) {
    std::fprintf(stderr, "Invoke failed\n");
    return 7;
  }
  std::FILE* out = std::fopen(argv[2], "wb");
  if (out == nullptr) return 8;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    if (std::fwrite(t->data.raw, 1, t->bytes, out) != t->bytes) return 8;
  }
  std::fclose(out);
  std::printf("arena_used_bytes %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()));
  return 0;
}
