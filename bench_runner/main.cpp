// fbnet_bench: command-line front end of the benchmark core.
//
//   fbnet_bench --manifest PATH [--output PATH]
//   fbnet_bench --model PATH [--input-shape 1,3,224,224 ...] [--dtype float32]
//               [--warmup N] [--iters N] [--rounds N] [--threads N]
//               [--etdump PATH] [--output PATH]
//
// Exit codes: 0 ok, 1 a program failed, 2 bad manifest / missing file / bad
// command line.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_core.h"

namespace {

const char* kUsage =
    "usage:\n"
    "  fbnet_bench --manifest PATH [--output PATH]\n"
    "      Run a benchmark manifest (docs/bench-protocol.md). The result JSON\n"
    "      goes to --output, default <manifest folder>/result.json; its path is\n"
    "      printed on stdout when done.\n"
    "  fbnet_bench --model PATH [--input-shape D0,D1,...]... [--dtype float32]\n"
    "              [--warmup N] [--iters N] [--rounds N] [--threads N]\n"
    "              [--etdump PATH] [--output PATH]\n"
    "      Benchmark one .pte (defaults: warmup 10, iters 50, rounds 1,\n"
    "      threads 1). Give --input-shape once per input, or omit it to use the\n"
    "      program's own input shapes. Prints latency statistics on stdout.\n"
    "  fbnet_bench --version | --help\n"
    "exit codes: 0 ok, 1 a program failed, 2 bad manifest/arguments/missing file\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "fbnet_bench: error: %s\n%s", msg.c_str(), kUsage);
  return fbnet_bench::kExitBadInput;
}

bool parse_int(const std::string& s, int min_value, int* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (end == nullptr || *end != '\0' || v < min_value || v > 1000000000L) return false;
  *out = static_cast<int>(v);
  return true;
}

bool parse_shape(const std::string& s, std::vector<int64_t>* out) {
  out->clear();
  if (s.empty()) return true;  // scalar (rank 0)
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string tok = s.substr(start, comma == std::string::npos ? std::string::npos
                                                                : comma - start);
    int v = 0;
    if (!parse_int(tok, 0, &v)) return false;
    out->push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string manifest_path, output_path, model_path, etdump_path, dtype = "float32";
  std::vector<std::vector<int64_t>> shapes;
  int warmup = 10, iters = 50, rounds = 1, threads = 1;

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* dst) -> bool {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    auto int_value = [&](int min_value, int* dst) -> bool {
      std::string v;
      return value(&v) && parse_int(v, min_value, dst);
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("fbnet_bench (ExecuTorch %s)\n", fbnet_bench::executorch_version());
      return 0;
    } else if (a == "--manifest") {
      if (!value(&manifest_path)) return usage_error("--manifest needs a path");
    } else if (a == "--output") {
      if (!value(&output_path)) return usage_error("--output needs a path");
    } else if (a == "--model") {
      if (!value(&model_path)) return usage_error("--model needs a path");
    } else if (a == "--input-shape") {
      std::string v;
      std::vector<int64_t> shape;
      if (!value(&v) || !parse_shape(v, &shape)) {
        return usage_error("--input-shape needs comma-separated integers, e.g. 1,3,224,224");
      }
      shapes.push_back(shape);
    } else if (a == "--dtype") {
      if (!value(&dtype)) return usage_error("--dtype needs a name");
    } else if (a == "--warmup") {
      if (!int_value(0, &warmup)) return usage_error("--warmup needs an integer >= 0");
    } else if (a == "--iters") {
      if (!int_value(1, &iters)) return usage_error("--iters needs an integer >= 1");
    } else if (a == "--rounds") {
      if (!int_value(1, &rounds)) return usage_error("--rounds needs an integer >= 1");
    } else if (a == "--threads") {
      if (!int_value(0, &threads)) return usage_error("--threads needs an integer >= 0");
    } else if (a == "--etdump") {
      if (!value(&etdump_path)) return usage_error("--etdump needs a path");
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }

  if (manifest_path.empty() == model_path.empty()) {
    return usage_error("give exactly one of --manifest or --model");
  }

  // ---------------------------------------------------------------- manifest
  if (!manifest_path.empty()) {
    fbnet_bench::Manifest manifest;
    try {
      manifest = fbnet_bench::load_manifest(manifest_path);
    } catch (const fbnet_bench::ManifestError& e) {
      std::fprintf(stderr, "fbnet_bench: error: %s\n", e.what());
      return fbnet_bench::kExitBadInput;
    }
    fbnet_bench::RunOptions opt;
    opt.output_path =
        output_path.empty() ? fbnet_bench::default_result_path(manifest_path) : output_path;
    fbnet_bench::RunOutcome out = fbnet_bench::run_manifest(manifest, opt);
    if (out.exit_code == fbnet_bench::kExitBadInput) {
      std::fprintf(stderr, "fbnet_bench: error: %s\n", out.fatal_error.c_str());
      return out.exit_code;
    }
    int failed = 0;
    for (const auto& p : out.result.programs) failed += p.ok ? 0 : 1;
    std::fprintf(stderr, "fbnet_bench: %zu programs, %d failed, threads %d\n",
                 out.result.programs.size(), failed, out.result.threads);
    std::printf("%s\n", opt.output_path.c_str());
    return out.exit_code;
  }

  // ----------------------------------------------------------- single model
  fbnet_bench::Manifest m;
  m.warmup = warmup;
  m.iters = iters;
  m.rounds = rounds;
  m.threads = threads;
  m.etdump = !etdump_path.empty();
  fbnet_bench::ProgramSpec spec;
  spec.id = std::filesystem::path(model_path).stem().string();
  spec.path = model_path;
  spec.resolved_path = model_path;
  for (const auto& s : shapes) {
    fbnet_bench::InputSpec in;
    in.shape = s;
    in.dtype = dtype;
    spec.inputs.push_back(in);
  }
  if (!fbnet_bench::is_supported_dtype(dtype)) {
    return usage_error("--dtype \"" + dtype + "\" is not supported");
  }
  m.programs.push_back(spec);

  fbnet_bench::RunOptions opt;
  opt.output_path = output_path;
  opt.etdump_path_override = etdump_path;
  fbnet_bench::RunOutcome out = fbnet_bench::run_manifest(m, opt);
  if (out.exit_code == fbnet_bench::kExitBadInput) {
    std::fprintf(stderr, "fbnet_bench: error: %s\n", out.fatal_error.c_str());
    return out.exit_code;
  }
  const fbnet_bench::ProgramResult& r = out.result.programs.front();
  if (!r.ok) {
    std::fprintf(stderr, "fbnet_bench: error: %s\n", r.error.c_str());
    // Missing model file is a "missing file" (2) in single-program mode.
    std::error_code ec;
    return std::filesystem::exists(model_path, ec) ? fbnet_bench::kExitProgramFailed
                                                   : fbnet_bench::kExitBadInput;
  }
  const auto& lat = r.latencies_ms;
  double sum = 0.0;
  for (double x : lat) sum += x;
  std::printf("model: %s\n", model_path.c_str());
  std::printf("threads: %d  warmup: %d  timed: %zu  load_ms: %.3f\n", out.result.threads,
              warmup, lat.size(), r.load_ms);
  std::printf(
      "latency_ms: min %.4f  median %.4f  mean %.4f  p90 %.4f  max %.4f\n",
      fbnet_bench::percentile(lat, 0.0), fbnet_bench::percentile(lat, 50.0),
      lat.empty() ? 0.0 : sum / static_cast<double>(lat.size()),
      fbnet_bench::percentile(lat, 90.0), fbnet_bench::percentile(lat, 100.0));
  if (!r.etdump.empty()) std::printf("etdump: %s\n", r.etdump.c_str());
  if (!output_path.empty()) std::printf("result: %s\n", output_path.c_str());
  return fbnet_bench::kExitOk;
}
