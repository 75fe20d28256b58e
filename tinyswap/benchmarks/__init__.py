"""Side-by-side benchmarks behind `tinyswap bench`.

- `interpreter`: tinyswap's Interpreter vs the TFLite Micro wheel vs LiteRT (`--interpreter`);
- `swap`: adapter switch / hot swap / cold swap vs PEFT's `hotswap_adapter` (`--swap`);
- `compiler`: compile time and the flash cost of slots by model size and S (`--compiler`);
- `suite`: all of them plus the simulated swap per storage configuration and the arena
  comparison, in one table (`tinyswap bench`).

Benchmarks use the compiler and the simulated device, so only the command line imports this
package, inside `tinyswap bench`; the runtime never does (its layer rule). The
simulated swap latency itself stays in `tinyswap.firmware_sim.swap_latency`: it is a property of
the device model in simulated time, not a wall-clock measurement, and `tinyswap demo` reports it
too without being a benchmark.
"""
