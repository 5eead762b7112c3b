#include "bench_core.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/util/scalar_type_util.h>
#include <executorch/runtime/core/hierarchical_allocator.h>
#include <executorch/runtime/core/span.h>
#include <executorch/runtime/executor/memory_manager.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/method_meta.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

#if defined(FBNET_WITH_ETDUMP) && FBNET_WITH_ETDUMP
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "threadpool_control.h"

#ifndef FBNET_EXECUTORCH_VERSION
#define FBNET_EXECUTORCH_VERSION "unknown"
#endif

namespace fbnet_bench {

namespace fs = std::filesystem;
namespace et = ::executorch::runtime;
using ::executorch::aten::ScalarType;
using ::executorch::aten::Tensor;
using ::executorch::aten::TensorImpl;
using ::executorch::extension::FileDataLoader;
using ::executorch::extension::MallocMemoryAllocator;

const char* executorch_version() { return FBNET_EXECUTORCH_VERSION; }

// ------------------------------------------------------------------ utils

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
#if defined(_WIN32)
  gmtime_s(&tm, &t);
#else
  gmtime_r(&t, &tm);
#endif
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool write_file_atomic(const std::string& path, const std::string& content,
                       std::string* error) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    if (error) *error = "cannot open " + tmp + " for writing";
    return false;
  }
  bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  ok = (std::fflush(f) == 0) && ok;
#if defined(__unix__) || defined(__APPLE__)
  if (ok) fsync(fileno(f));
#endif
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    if (error) *error = "cannot write " + tmp;
    return false;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    if (error) *error = "cannot rename " + tmp + " to " + path;
    return false;
  }
  return true;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  double pos = (q / 100.0) * static_cast<double>(values.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = static_cast<size_t>(std::ceil(pos));
  double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

namespace {

std::string error_name(et::Error e) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s (0x%x)", et::to_string(e),
                static_cast<unsigned>(e));
  return buf;
}

// dtype names accepted in the manifest -> ExecuTorch scalar types.
bool parse_dtype(const std::string& name, ScalarType* out) {
  struct Entry {
    const char* name;
    ScalarType type;
  };
  static const Entry kTable[] = {
      {"float32", ScalarType::Float},   {"float", ScalarType::Float},
      {"float64", ScalarType::Double},  {"double", ScalarType::Double},
      {"float16", ScalarType::Half},    {"half", ScalarType::Half},
      {"bfloat16", ScalarType::BFloat16}, {"int8", ScalarType::Char},
      {"uint8", ScalarType::Byte},      {"int16", ScalarType::Short},
      {"int32", ScalarType::Int},       {"int64", ScalarType::Long},
      {"bool", ScalarType::Bool},
  };
  for (const auto& e : kTable) {
    if (name == e.name) {
      *out = e.type;
      return true;
    }
  }
  return false;
}

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float:
      return "float32";
    case ScalarType::Double:
      return "float64";
    case ScalarType::Half:
      return "float16";
    case ScalarType::BFloat16:
      return "bfloat16";
    case ScalarType::Char:
      return "int8";
    case ScalarType::Byte:
      return "uint8";
    case ScalarType::Short:
      return "int16";
    case ScalarType::Int:
      return "int32";
    case ScalarType::Long:
      return "int64";
    case ScalarType::Bool:
      return "bool";
    default:
      return et::toString(t);
  }
}

}  // namespace

bool is_supported_dtype(const std::string& name) {
  ScalarType t;
  return parse_dtype(name, &t);
}

namespace {

// ------------------------------------------------------------ manifest

[[noreturn]] void bad(const std::string& msg) {
  throw ManifestError("invalid manifest: " + msg);
}

int get_int(const json::Value& doc, const char* key, int def, int min_value) {
  const json::Value* v = doc.find(key);
  if (v == nullptr) return def;
  if (!v->is_integer()) {
    bad(std::string("'") + key + "' must be an integer, got " +
        json::Value::type_name(v->type()) +
        (v->is_number() ? " with a fraction" : ""));
  }
  int64_t i = v->as_int();
  if (i < min_value || i > 1000000000) {
    bad(std::string("'") + key + "' must be an integer >= " +
        std::to_string(min_value) + ", got " + std::to_string(i));
  }
  return static_cast<int>(i);
}

}  // namespace

Manifest manifest_from_json(const json::Value& doc, const std::string& base_dir) {
  if (!doc.is_object()) bad("top level must be an object");
  const json::Value* schema = doc.find("schema");
  if (schema == nullptr) bad("missing 'schema' (expected \"" + std::string(kManifestSchema) + "\")");
  if (!schema->is_string() || schema->as_string() != kManifestSchema) {
    bad("'schema' must be \"" + std::string(kManifestSchema) + "\"");
  }

  Manifest m;
  m.base_dir = base_dir;
  m.warmup = get_int(doc, "warmup", m.warmup, 0);
  m.iters = get_int(doc, "iters", m.iters, 1);
  m.rounds = get_int(doc, "rounds", m.rounds, 1);
  m.threads = get_int(doc, "threads", m.threads, 0);
  m.etdump_iters = get_int(doc, "etdump_iters", m.etdump_iters, 1);
  if (const json::Value* v = doc.find("etdump")) {
    if (!v->is_bool()) bad("'etdump' must be true or false");
    m.etdump = v->as_bool();
  }
  if (const json::Value* v = doc.find("save_outputs")) {
    if (!v->is_bool()) bad("'save_outputs' must be true or false");
    m.save_outputs = v->as_bool();
  }
  if (const json::Value* v = doc.find("cooldown_s")) {
    if (!v->is_number() || !(v->as_double() >= 0.0) ||
        !std::isfinite(v->as_double())) {
      bad("'cooldown_s' must be a number >= 0");
    }
    m.cooldown_s = v->as_double();
  }

  const json::Value* programs = doc.find("programs");
  if (programs == nullptr) bad("missing 'programs'");
  if (!programs->is_array()) bad("'programs' must be an array");
  if (programs->as_array().empty()) bad("'programs' is empty");

  size_t index = 0;
  for (const json::Value& p : programs->as_array()) {
    const std::string where = "programs[" + std::to_string(index) + "]";
    if (!p.is_object()) bad(where + " must be an object");
    ProgramSpec spec;
    const json::Value* id = p.find("id");
    if (id == nullptr || !id->is_string() || id->as_string().empty()) {
      bad(where + ".id must be a non-empty string");
    }
    spec.id = id->as_string();
    const json::Value* path = p.find("path");
    if (path == nullptr || !path->is_string() || path->as_string().empty()) {
      bad(where + ".path must be a non-empty string");
    }
    spec.path = path->as_string();
    fs::path pp(spec.path);
    if (pp.is_relative() && !base_dir.empty()) pp = fs::path(base_dir) / pp;
    spec.resolved_path = pp.lexically_normal().string();

    if (const json::Value* inputs = p.find("inputs")) {
      if (!inputs->is_array()) bad(where + ".inputs must be an array");
      size_t k = 0;
      for (const json::Value& in : inputs->as_array()) {
        const std::string iw = where + ".inputs[" + std::to_string(k) + "]";
        if (!in.is_object()) bad(iw + " must be an object");
        InputSpec is;
        const json::Value* shape = in.find("shape");
        if (shape == nullptr || !shape->is_array()) {
          bad(iw + ".shape must be an array of integers");
        }
        for (const json::Value& d : shape->as_array()) {
          if (!d.is_integer() || d.as_int() < 0 || d.as_int() > 0x7fffffff) {
            bad(iw + ".shape must hold integers >= 0");
          }
          is.shape.push_back(d.as_int());
        }
        if (const json::Value* dt = in.find("dtype")) {
          if (!dt->is_string()) bad(iw + ".dtype must be a string");
          ScalarType st;
          if (!parse_dtype(dt->as_string(), &st)) {
            bad(iw + ".dtype \"" + dt->as_string() + "\" is not supported");
          }
          is.dtype = dt->as_string();
        }
        spec.inputs.push_back(std::move(is));
        ++k;
      }
    }
    for (const auto& prev : m.programs) {
      if (prev.id == spec.id) bad(where + ".id \"" + spec.id + "\" is duplicated");
    }
    m.programs.push_back(std::move(spec));
    ++index;
  }
  return m;
}

Manifest parse_manifest(const std::string& text, const std::string& base_dir) {
  json::Value doc;
  try {
    doc = json::parse(text);
  } catch (const json::ParseError& e) {
    throw ManifestError(std::string("manifest is not valid JSON: ") + e.what());
  }
  return manifest_from_json(doc, base_dir);
}

Manifest load_manifest(const std::string& manifest_path) {
  std::ifstream f(manifest_path, std::ios::binary);
  if (!f) throw ManifestError("cannot read manifest file: " + manifest_path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string base = fs::path(manifest_path).parent_path().string();
  return parse_manifest(ss.str(), base);
}

std::string default_result_path(const std::string& manifest_path) {
  return (fs::path(manifest_path).parent_path() / "result.json").string();
}

// ------------------------------------------------------------ result JSON

json::Value result_to_json(const BenchResult& r) {
  using json::Value;
  Value root = Value::object();
  root.set("schema", Value::string(kResultSchema));

  Value runner = Value::object();
  runner.set("name", Value::string(kRunnerName));
  runner.set("runtime", Value::string("executorch"));
  runner.set("runtime_version", Value::string(r.runtime_version));
  runner.set("threads", Value::integer(r.threads));
  root.set("runner", std::move(runner));

  Value dev = Value::object();
  dev.set("cpu_model", Value::string(r.device.cpu_model));
  dev.set("cores", Value::integer(r.device.cores));
  Value freqs = Value::array();
  for (int64_t f : r.device.max_freq_khz) {
    freqs.push(f >= 0 ? Value::integer(f) : Value::null());
  }
  dev.set("max_freq_khz", std::move(freqs));
  Value govs = Value::array();
  for (const auto& g : r.device.governor) {
    govs.push(g.empty() ? Value::null() : Value::string(g));
  }
  dev.set("governor", std::move(govs));
  dev.set("os", Value::string(r.device.os));
  root.set("device", std::move(dev));

  Value programs = Value::array();
  for (const ProgramResult& p : r.programs) {
    Value o = Value::object();
    o.set("id", Value::string(p.id));
    o.set("path", Value::string(p.path));
    o.set("status", Value::string(p.ok ? "ok" : "error"));
    o.set("error", p.ok ? Value::null() : Value::string(p.error));
    o.set("load_ms", p.load_ms >= 0 ? Value::number(p.load_ms) : Value::null());
    Value lat = Value::array();
    for (double x : p.latencies_ms) lat.push(Value::number(x));
    o.set("latencies_ms", std::move(lat));
    Value rounds = Value::array();
    for (const auto& rr : p.rounds) {
      Value one = Value::array();
      for (double x : rr) one.push(Value::number(x));
      rounds.push(std::move(one));
    }
    o.set("rounds", std::move(rounds));
    o.set("etdump", p.etdump.empty() ? Value::null() : Value::string(p.etdump));
    if (!p.outputs.empty()) {
      Value outs = Value::array();
      for (const std::string& path : p.outputs) outs.push(Value::string(path));
      o.set("outputs", std::move(outs));
    }
    programs.push(std::move(o));
  }
  root.set("programs", std::move(programs));
  root.set("started", Value::string(r.started));
  root.set("finished", r.finished.empty() ? Value::null() : Value::string(r.finished));
  return root;
}

// ------------------------------------------------------------ runtime

namespace {

// Owns one input tensor: the data buffer and the metadata arrays the
// TensorImpl points at.
struct InputTensor {
  std::vector<TensorImpl::SizesType> sizes;
  std::vector<TensorImpl::DimOrderType> dim_order;
  std::vector<TensorImpl::StridesType> strides;
  std::unique_ptr<uint8_t[]> storage;
  void* data = nullptr;
  std::unique_ptr<TensorImpl> impl;
};

// Everything one loaded method needs, kept at fixed addresses (the Method
// holds raw pointers into it).
struct LoadedProgram {
  // Declared first so that it is destroyed last: the method points at it.
  std::unique_ptr<et::EventTracer> tracer;
  std::unique_ptr<FileDataLoader> loader;
  std::unique_ptr<et::Program> program;
  MallocMemoryAllocator method_allocator;
  MallocMemoryAllocator temp_allocator;
  std::vector<std::unique_ptr<uint8_t[]>> planned_buffers;
  std::vector<et::Span<uint8_t>> planned_spans;
  std::unique_ptr<et::HierarchicalAllocator> planned_memory;
  std::unique_ptr<et::MemoryManager> memory_manager;
  std::unique_ptr<et::Method> method;
  std::vector<std::unique_ptr<InputTensor>> inputs;
};

template <typename T>
void fill_pattern(void* data, size_t n, T (*f)(size_t)) {
  T* p = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) p[i] = f(i);
}

// Deterministic input pattern: float types get ((i % 255) / 255) - 0.5.
bool fill_input(ScalarType t, void* data, size_t n) {
  switch (t) {
    case ScalarType::Float:
      fill_pattern<float>(data, n, [](size_t i) {
        return static_cast<float>(i % 255) / 255.0f - 0.5f;
      });
      return true;
    case ScalarType::Double:
      fill_pattern<double>(data, n, [](size_t i) {
        return static_cast<double>(i % 255) / 255.0 - 0.5;
      });
      return true;
    case ScalarType::Half:
      fill_pattern<::executorch::aten::Half>(data, n, [](size_t i) {
        return ::executorch::aten::Half(static_cast<float>(i % 255) / 255.0f - 0.5f);
      });
      return true;
    case ScalarType::BFloat16:
      fill_pattern<::executorch::aten::BFloat16>(data, n, [](size_t i) {
        return ::executorch::aten::BFloat16(static_cast<float>(i % 255) / 255.0f -
                                            0.5f);
      });
      return true;
    case ScalarType::Byte:
      fill_pattern<uint8_t>(data, n,
                            [](size_t i) { return static_cast<uint8_t>(i % 255); });
      return true;
    case ScalarType::Char:
      fill_pattern<int8_t>(data, n, [](size_t i) {
        return static_cast<int8_t>(static_cast<int>(i % 255) - 127);
      });
      return true;
    case ScalarType::Short:
      fill_pattern<int16_t>(data, n,
                            [](size_t i) { return static_cast<int16_t>(i % 255); });
      return true;
    case ScalarType::Int:
      fill_pattern<int32_t>(data, n,
                            [](size_t i) { return static_cast<int32_t>(i % 255); });
      return true;
    case ScalarType::Long:
      fill_pattern<int64_t>(data, n,
                            [](size_t i) { return static_cast<int64_t>(i % 255); });
      return true;
    case ScalarType::Bool:
      fill_pattern<bool>(data, n, [](size_t i) { return (i % 2) == 1; });
      return true;
    default:
      return false;
  }
}

std::string shape_str(const std::vector<TensorImpl::SizesType>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

// Builds and sets every input of the method. Returns "" or an error message.
std::string prepare_inputs(LoadedProgram& lp, const ProgramSpec& spec) {
  et::MethodMeta meta = lp.method->method_meta();
  const size_t n_inputs = meta.num_inputs();
  if (!spec.inputs.empty() && spec.inputs.size() != n_inputs) {
    return "manifest lists " + std::to_string(spec.inputs.size()) +
           " inputs but the program's method takes " + std::to_string(n_inputs);
  }
  for (size_t i = 0; i < n_inputs; ++i) {
    const std::string where = "input " + std::to_string(i) + ": ";
    auto tag = meta.input_tag(i);
    if (!tag.ok()) return where + "cannot read tag: " + error_name(tag.error());
    if (*tag != et::Tag::Tensor) {
      return where + "only tensor inputs are supported";
    }
    auto info = meta.input_tensor_meta(i);
    if (!info.ok()) return where + "cannot read metadata: " + error_name(info.error());

    auto in = std::make_unique<InputTensor>();
    const auto meta_sizes = info->sizes();
    const auto meta_order = info->dim_order();
    ScalarType dtype = info->scalar_type();
    if (!spec.inputs.empty()) {
      const InputSpec& is = spec.inputs[i];
      ScalarType want = ScalarType::Float;
      parse_dtype(is.dtype, &want);  // validated with the manifest
      if (want != dtype) {
        return where + "manifest dtype " + is.dtype + " but the program expects " +
               dtype_name(dtype);
      }
      if (is.shape.size() != meta_sizes.size()) {
        return where + "manifest shape has rank " + std::to_string(is.shape.size()) +
               " but the program expects rank " + std::to_string(meta_sizes.size());
      }
      for (int64_t d : is.shape) {
        in->sizes.push_back(static_cast<TensorImpl::SizesType>(d));
      }
    } else {
      in->sizes.assign(meta_sizes.begin(), meta_sizes.end());
    }
    const size_t rank = in->sizes.size();
    if (meta_order.size() == rank) {
      in->dim_order.assign(meta_order.begin(), meta_order.end());
    } else {
      for (size_t d = 0; d < rank; ++d) {
        in->dim_order.push_back(static_cast<TensorImpl::DimOrderType>(d));
      }
    }
    // Strides from sizes and dim order (innermost dimension last in order).
    in->strides.assign(rank, 1);
    int64_t stride = 1;
    for (size_t k = rank; k-- > 0;) {
      size_t dim = in->dim_order[k];
      if (dim >= rank) return where + "invalid dim order in program metadata";
      in->strides[dim] = static_cast<TensorImpl::StridesType>(stride);
      stride *= std::max<int64_t>(in->sizes[dim], 1);
    }
    size_t numel = 1;
    for (auto s : in->sizes) numel *= static_cast<size_t>(s);
    const size_t nbytes = numel * et::elementSize(dtype);
    constexpr size_t kAlign = 64;
    in->storage.reset(new uint8_t[nbytes + kAlign]);
    void* p = in->storage.get();
    size_t space = nbytes + kAlign;
    in->data = std::align(kAlign, nbytes, p, space);
    if (!fill_input(dtype, in->data, numel)) {
      return where + "unsupported input dtype " + dtype_name(dtype);
    }
    in->impl = std::make_unique<TensorImpl>(
        dtype, static_cast<ssize_t>(rank), in->sizes.data(), in->data,
        in->dim_order.data(), in->strides.data());
    et::Error err = lp.method->set_input(et::EValue(Tensor(in->impl.get())), i);
    if (err != et::Error::Ok) {
      return where + "set_input failed for shape " + shape_str(in->sizes) + ": " +
             error_name(err);
    }
    lp.inputs.push_back(std::move(in));
  }
  return "";
}

// Loads program + method (+ inputs). `tracer` (may be null) is attached to
// the method. Returns nullptr and sets *error on failure; *load_ms covers the
// file, program and method loading (input preparation excluded).
std::unique_ptr<LoadedProgram> load_program(const ProgramSpec& spec,
                                            std::unique_ptr<et::EventTracer> tracer,
                                            double* load_ms, std::string* error) {
  auto lp = std::make_unique<LoadedProgram>();
  lp->tracer = std::move(tracer);
  auto t0 = std::chrono::steady_clock::now();

  {
    std::ifstream probe(spec.resolved_path, std::ios::binary);
    if (!probe) {
      *error = "program file not found or unreadable: " + spec.resolved_path;
      return nullptr;
    }
  }
  auto loader = FileDataLoader::from(spec.resolved_path.c_str());
  if (!loader.ok()) {
    *error = "cannot open program file " + spec.resolved_path + ": " +
             error_name(loader.error());
    return nullptr;
  }
  lp->loader = std::make_unique<FileDataLoader>(std::move(*loader));

  auto program = et::Program::load(lp->loader.get());
  if (!program.ok()) {
    *error = "cannot parse program " + spec.resolved_path + ": " +
             error_name(program.error());
    return nullptr;
  }
  lp->program = std::make_unique<et::Program>(std::move(*program));

  // Prefer "forward"; otherwise the first method.
  std::string method_name;
  const size_t n_methods = lp->program->num_methods();
  for (size_t i = 0; i < n_methods; ++i) {
    auto name = lp->program->get_method_name(i);
    if (!name.ok()) continue;
    if (method_name.empty()) method_name = *name;
    if (std::string(*name) == "forward") {
      method_name = "forward";
      break;
    }
  }
  if (method_name.empty()) {
    *error = "program has no methods";
    return nullptr;
  }

  auto meta = lp->program->method_meta(method_name.c_str());
  if (!meta.ok()) {
    *error = "cannot read metadata of method " + method_name + ": " +
             error_name(meta.error());
    return nullptr;
  }
  for (size_t id = 0; id < meta->num_memory_planned_buffers(); ++id) {
    auto size = meta->memory_planned_buffer_size(id);
    if (!size.ok()) {
      *error = "cannot read planned buffer size: " + error_name(size.error());
      return nullptr;
    }
    const size_t n = static_cast<size_t>(*size);
    lp->planned_buffers.emplace_back(new uint8_t[n > 0 ? n : 1]);
    lp->planned_spans.emplace_back(lp->planned_buffers.back().get(), n);
  }
  lp->planned_memory = std::make_unique<et::HierarchicalAllocator>(
      et::Span<et::Span<uint8_t>>(lp->planned_spans.data(),
                                  lp->planned_spans.size()));
  lp->memory_manager = std::make_unique<et::MemoryManager>(
      &lp->method_allocator, lp->planned_memory.get(), &lp->temp_allocator);

  auto method = lp->program->load_method(method_name.c_str(),
                                         lp->memory_manager.get(),
                                         lp->tracer.get());
  if (!method.ok()) {
    *error = "cannot load method " + method_name + ": " + error_name(method.error()) +
             " (missing operator or backend? see the runtime log above)";
    return nullptr;
  }
  lp->method = std::make_unique<et::Method>(std::move(*method));
  auto t1 = std::chrono::steady_clock::now();
  *load_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();

  std::string in_err = prepare_inputs(*lp, spec);
  if (!in_err.empty()) {
    *error = in_err;
    return nullptr;
  }
  return lp;
}

// One execution; the clock brackets execute() alone.
et::Error timed_execute(et::Method& m, double* ms) {
  auto t0 = std::chrono::steady_clock::now();
  et::Error e = m.execute();
  auto t1 = std::chrono::steady_clock::now();
  *ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  return e;
}

// Writes every tensor output of `m`'s last execution to <root>/outputs/<index>.<k>.bin
// (raw bytes, the tensor's dtype and shape); returns an error message or "".
std::string save_outputs(const et::Method& m, const fs::path& root, int index,
                         std::vector<std::string>* paths) {
  std::error_code ec;
  fs::create_directories(root / "outputs", ec);
  for (size_t k = 0; k < m.outputs_size(); ++k) {
    const et::EValue& value = m.get_output(k);
    if (!value.isTensor()) continue;
    const auto& tensor = value.toTensor();
    const std::string rel =
        "outputs/" + std::to_string(index) + "." + std::to_string(k) + ".bin";
    const fs::path file = root / rel;
    std::FILE* f = std::fopen(file.string().c_str(), "wb");
    const size_t n = tensor.nbytes();
    bool ok = f != nullptr && std::fwrite(tensor.const_data_ptr(), 1, n, f) == n;
    if (f != nullptr && std::fclose(f) != 0) ok = false;
    if (!ok) return "cannot write " + file.string();
    paths->push_back(rel);
  }
  return "";
}

bool cancelled(const RunOptions& o) {
  return o.cancel != nullptr && o.cancel->load(std::memory_order_relaxed);
}

std::string fmt_ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

}  // namespace

RunOutcome run_manifest(const Manifest& manifest, const RunOptions& options) {
  auto log = options.log ? options.log : [](const std::string& s) {
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
  };

  RunOutcome out;
  BenchResult& res = out.result;
  res.runtime_version = executorch_version();
  res.started = utc_now_iso8601();
  res.device = read_device_info();

  et::runtime_init();

  auto fatal = [&](const std::string& msg) {
    out.exit_code = kExitBadInput;
    out.fatal_error = msg;
    return out;
  };

  if (manifest.programs.empty()) return fatal("manifest has no programs");
  if (manifest.rounds < 1 || manifest.iters < 1 || manifest.warmup < 0) {
    return fatal("rounds and iters must be >= 1, warmup >= 0");
  }

  // Threads first: XNNPACK captures the pool when a method is loaded.
  if (manifest.threads > 0) {
    if (!set_threadpool_size(static_cast<size_t>(manifest.threads))) {
      return fatal("cannot set the ExecuTorch thread pool to " +
                   std::to_string(manifest.threads) + " threads" +
                   (threadpool_available() ? "" : " (runner built without thread pool)"));
    }
  }
  res.threads = static_cast<int>(threadpool_size());

  // Where results and ETDumps go.
  fs::path etdump_root;
  if (!options.etdump_root.empty()) {
    etdump_root = options.etdump_root;
  } else if (!options.output_path.empty()) {
    etdump_root = fs::path(options.output_path).parent_path();
  } else {
    etdump_root = fs::current_path();
  }

  auto write_result = [&]() -> bool {
    if (options.output_path.empty()) return true;
    std::string err;
    if (!write_file_atomic(options.output_path, json::dump(result_to_json(res)), &err)) {
      out.exit_code = kExitBadInput;
      out.fatal_error = "cannot write result: " + err;
      return false;
    }
    return true;
  };

  // Check early that the result can be written at all.
  res.programs.resize(manifest.programs.size());
  for (size_t i = 0; i < manifest.programs.size(); ++i) {
    res.programs[i].id = manifest.programs[i].id;
    res.programs[i].path = manifest.programs[i].path;
  }
  if (!write_result()) return out;

  // ---- load every program once
  std::vector<std::unique_ptr<LoadedProgram>> loaded(manifest.programs.size());
  for (size_t i = 0; i < manifest.programs.size(); ++i) {
    const ProgramSpec& spec = manifest.programs[i];
    ProgramResult& pr = res.programs[i];
    std::string err;
    double load_ms = -1.0;
    loaded[i] = load_program(spec, nullptr, &load_ms, &err);
    pr.load_ms = load_ms;
    if (!loaded[i]) {
      pr.ok = false;
      pr.error = err;
      log("[" + spec.id + "] load failed: " + err);
    } else {
      log("[" + spec.id + "] loaded in " + fmt_ms(load_ms) + " ms");
    }
  }
  if (!write_result()) return out;

  // ---- round-robin timed rounds
  const int per_round = manifest.iters_per_round();
  for (int round = 0; round < manifest.rounds; ++round) {
    for (size_t i = 0; i < manifest.programs.size(); ++i) {
      ProgramResult& pr = res.programs[i];
      if (!loaded[i] || !pr.ok) continue;
      if (cancelled(options)) break;
      et::Method& m = *loaded[i]->method;
      std::vector<double> this_round;
      this_round.reserve(static_cast<size_t>(per_round));
      std::string err;
      for (int w = 0; w < manifest.warmup && err.empty(); ++w) {
        et::Error e = m.execute();
        if (e != et::Error::Ok) err = "warm-up execution failed: " + error_name(e);
      }
      for (int k = 0; k < per_round && err.empty(); ++k) {
        double ms = 0.0;
        et::Error e = timed_execute(m, &ms);
        if (e != et::Error::Ok) {
          err = "execution failed: " + error_name(e);
        } else {
          this_round.push_back(ms);
        }
      }
      if (!this_round.empty() || err.empty()) {
        pr.latencies_ms.insert(pr.latencies_ms.end(), this_round.begin(),
                               this_round.end());
        pr.rounds.push_back(this_round);
      }
      if (!err.empty()) {
        pr.ok = false;
        pr.error = "round " + std::to_string(round) + ": " + err;
        loaded[i].reset();
        log("[" + pr.id + "] " + pr.error);
      } else {
        log("[" + pr.id + "] round " + std::to_string(round + 1) + "/" +
            std::to_string(manifest.rounds) + " median " +
            fmt_ms(percentile(this_round, 50.0)) + " ms");
      }
    }
    if (!write_result()) return out;
    if (cancelled(options)) break;
    if (manifest.cooldown_s > 0.0 && round + 1 < manifest.rounds) {
      std::this_thread::sleep_for(std::chrono::duration<double>(manifest.cooldown_s));
    }
  }
  // ---- outputs of the last timed execution (to check them against a reference)
  if (manifest.save_outputs && !cancelled(options)) {
    for (size_t i = 0; i < manifest.programs.size(); ++i) {
      ProgramResult& pr = res.programs[i];
      if (!loaded[i] || !pr.ok) continue;
      std::string err =
          save_outputs(*loaded[i]->method, etdump_root, static_cast<int>(i), &pr.outputs);
      if (!err.empty()) {
        pr.ok = false;
        pr.error = "outputs: " + err;
        log("[" + pr.id + "] " + pr.error);
      }
    }
    if (!write_result()) return out;
  }
  // Free the timing instances before the ETDump pass.
  loaded.clear();

  if (cancelled(options)) {
    for (auto& pr : res.programs) {
      if (pr.ok && static_cast<int>(pr.rounds.size()) < manifest.rounds) {
        pr.ok = false;
        pr.error = "cancelled after " + std::to_string(pr.rounds.size()) + " rounds";
      }
    }
  }

  // ---- ETDump pass (never part of the latencies above)
  if (manifest.etdump && !cancelled(options)) {
#if defined(FBNET_WITH_ETDUMP) && FBNET_WITH_ETDUMP
    for (size_t i = 0; i < manifest.programs.size(); ++i) {
      ProgramResult& pr = res.programs[i];
      if (!pr.ok) continue;
      const ProgramSpec& spec = manifest.programs[i];
      auto gen = std::make_unique<::executorch::etdump::ETDumpGen>();
      auto* gen_ptr = gen.get();
      std::string err;
      double load_ms = 0.0;
      auto lp = load_program(spec, std::move(gen), &load_ms, &err);
      const int total = manifest.warmup + manifest.etdump_iters;
      for (int k = 0; lp && k < total && err.empty(); ++k) {
        et::Error e = lp->method->execute();
        if (e != et::Error::Ok) err = "execution failed: " + error_name(e);
      }
      std::string rel;
      fs::path file;
      if (err.empty()) {
        if (!options.etdump_path_override.empty() && i == 0) {
          file = options.etdump_path_override;
          rel = options.etdump_path_override;
        } else {
          rel = "etdump/" + std::to_string(i) + ".etdp";
          file = etdump_root / "etdump" / (std::to_string(i) + ".etdp");
        }
        std::error_code ec;
        if (file.has_parent_path()) fs::create_directories(file.parent_path(), ec);
        ::executorch::etdump::ETDumpResult dump = gen_ptr->get_etdump_data();
        if (dump.buf == nullptr || dump.size == 0) {
          err = "ETDump is empty";
        } else {
          std::FILE* f = std::fopen(file.string().c_str(), "wb");
          if (f == nullptr ||
              std::fwrite(dump.buf, 1, dump.size, f) != dump.size) {
            err = "cannot write " + file.string();
          }
          if (f != nullptr && std::fclose(f) != 0) err = "cannot write " + file.string();
          // Dynamically allocated by ETDumpGen (no user buffer given).
          std::free(dump.buf);
        }
      }
      lp.reset();  // method before its tracer
      if (err.empty()) {
        pr.etdump = rel;
        log("[" + pr.id + "] ETDump written to " + file.string());
      } else {
        pr.ok = false;
        pr.error = "etdump: " + err;
        log("[" + pr.id + "] " + pr.error);
      }
    }
#else
    for (auto& pr : res.programs) {
      if (!pr.ok) continue;
      pr.ok = false;
      pr.error = "etdump: runner built without ETDump support";
    }
#endif
  }

  res.finished = utc_now_iso8601();
  if (!write_result()) return out;
  for (const auto& pr : res.programs) {
    if (!pr.ok) out.exit_code = kExitProgramFailed;
  }
  return out;
}

}  // namespace fbnet_bench
