// fbnet_bench core: runs ExecuTorch programs following docs/bench-protocol.md.
//
// This library has no main() and no platform-specific code outside
// device_info.cpp, so the same sources are linked by the Android/Linux CLI
// (main.cpp) and by the iOS app's Objective-C++ bridge.
//
// Typical use:
//   fbnet_bench::Manifest m = fbnet_bench::load_manifest(path);  // throws
//   fbnet_bench::RunOptions opt;
//   opt.output_path = fbnet_bench::default_result_path(path);
//   fbnet_bench::RunOutcome out = fbnet_bench::run_manifest(m, opt);
//   return out.exit_code;
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_info.h"
#include "json.h"

namespace fbnet_bench {

constexpr const char* kManifestSchema = "fbnet-bench-manifest/1";
constexpr const char* kResultSchema = "fbnet-bench-result/1";
constexpr const char* kRunnerName = "fbnet_bench";

// Process exit codes (docs/bench-protocol.md).
enum ExitCode : int {
  kExitOk = 0,             // every program ran
  kExitProgramFailed = 1,  // at least one program has status "error"
  kExitBadInput = 2,       // bad manifest, missing manifest, unwritable output
};

struct InputSpec {
  std::vector<int64_t> shape;
  std::string dtype = "float32";
};

struct ProgramSpec {
  std::string id;
  std::string path;           // as written in the manifest (reported back)
  std::string resolved_path;  // path joined to the manifest folder if relative
  // Empty: take shapes/dtypes from the program's own method metadata.
  std::vector<InputSpec> inputs;
};

struct Manifest {
  std::vector<ProgramSpec> programs;
  int warmup = 10;
  int iters = 50;
  int rounds = 5;
  int threads = 1;  // 0: leave ExecuTorch's default pool size
  bool etdump = false;
  int etdump_iters = 10;
  double cooldown_s = 0.0;
  bool save_outputs = false;  // write each output tensor of the last timed execution
  std::string base_dir;  // folder of the manifest ("" = current directory)

  // ceil(iters / rounds): timed executions per program per round.
  int iters_per_round() const { return (iters + rounds - 1) / rounds; }
};

// A manifest that cannot be used (exit code 2). The message names the field.
class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Validates and converts a parsed manifest document. Relative program paths
// are resolved against base_dir. Throws ManifestError.
Manifest manifest_from_json(const json::Value& doc, const std::string& base_dir);
// Parses JSON text, then manifest_from_json(). Throws ManifestError.
Manifest parse_manifest(const std::string& text, const std::string& base_dir);
// Reads the file (missing/unreadable file -> ManifestError), then parses it
// with base_dir = the file's folder.
Manifest load_manifest(const std::string& manifest_path);

// True for the dtype names accepted in manifests: float32 (float), float64
// (double), float16 (half), bfloat16, int8, uint8, int16, int32, int64, bool.
bool is_supported_dtype(const std::string& name);

// <manifest folder>/result.json
std::string default_result_path(const std::string& manifest_path);

struct ProgramResult {
  std::string id;
  std::string path;
  bool ok = true;
  std::string error;
  double load_ms = -1.0;  // < 0: not loaded (written as null)
  std::vector<double> latencies_ms;
  std::vector<std::vector<double>> rounds;
  std::string etdump;  // path relative to the result file; "" = none (null)
  // "outputs/<index>.<k>.bin" (raw tensor bytes) per output, with save_outputs
  std::vector<std::string> outputs;
};

struct BenchResult {
  std::string runtime_version;
  int threads = 0;  // pool size actually in effect
  DeviceInfo device;
  std::vector<ProgramResult> programs;
  std::string started;
  std::string finished;  // "" while the run is in progress (written as null)
};

json::Value result_to_json(const BenchResult& result);

struct RunOptions {
  // Result JSON, rewritten atomically after loading, after every round and at
  // the end. Empty: nothing is written (the caller reads RunOutcome).
  std::string output_path;
  // Folder under which "etdump/<index>.etdp" is written; default: the folder
  // of output_path (or the current directory when output_path is empty).
  std::string etdump_root;
  // Single-program mode: explicit ETDump file for program 0 (reported as
  // given). Overrides etdump_root.
  std::string etdump_path_override;
  // Progress messages (one line each, no trailing newline). Default: stderr.
  std::function<void(const std::string&)> log;
  // Optional cancellation flag, polled between executions.
  const std::atomic<bool>* cancel = nullptr;
};

struct RunOutcome {
  int exit_code = kExitOk;
  std::string fatal_error;  // set when exit_code == kExitBadInput
  BenchResult result;
};

// Runs the protocol: set threads, load every program once, `rounds`
// round-robin rounds of (warmup untimed + iters_per_round timed) executions,
// then the optional ETDump pass. Program failures are recorded per program;
// never throws for them.
RunOutcome run_manifest(const Manifest& manifest, const RunOptions& options);

// ExecuTorch version the runner was built against (e.g. "1.5.1").
const char* executorch_version();

// "2026-11-26T10:00:00Z"
std::string utc_now_iso8601();

// Writes via "<path>.tmp" + rename. Returns false and sets *error on failure.
bool write_file_atomic(const std::string& path, const std::string& content,
                       std::string* error);

// Summary statistics helpers (used by the CLI's single-program mode).
double percentile(std::vector<double> values, double q);  // q in [0, 100]

}  // namespace fbnet_bench
