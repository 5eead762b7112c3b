#include "device_info.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(__linux__) || defined(__ANDROID__)
#include <sys/utsname.h>
#include <unistd.h>
#define FBNET_DEVICE_LINUX 1
#endif

#if defined(__ANDROID__)
#include <sys/system_properties.h>
#endif

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#include <sys/utsname.h>
#endif

namespace fbnet_bench {

namespace {

[[maybe_unused]] std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r'))
    ++b;
  while (e > b &&
         (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' ||
          s[e - 1] == '\r'))
    --e;
  return s.substr(b, e - b);
}

[[maybe_unused]] bool read_first_line(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::string line;
  if (!std::getline(f, line)) return false;
  *out = trim(line);
  return true;
}

#if defined(__ANDROID__)
std::string android_prop(const char* name) {
  char buf[PROP_VALUE_MAX + 1] = {0};
  int n = __system_property_get(name, buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}
#endif

#if defined(FBNET_DEVICE_LINUX)
// First non-empty value among the given /proc/cpuinfo keys (x86: "model
// name"; arm64: "Hardware" on older kernels, "model name"/"Processor" on
// some, "CPU part" as a last resort).
std::string cpuinfo_model() {
  std::ifstream f("/proc/cpuinfo");
  if (!f) return "";
  const char* keys[] = {"model name", "Hardware", "Processor", "cpu model",
                        "CPU part"};
  std::string found[5];
  std::string line;
  while (std::getline(f, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = trim(line.substr(0, colon));
    std::string val = trim(line.substr(colon + 1));
    for (int i = 0; i < 5; ++i) {
      if (key == keys[i] && found[i].empty()) found[i] = val;
    }
  }
  for (const auto& v : found) {
    if (!v.empty()) return v;
  }
  return "";
}
#endif

}  // namespace

DeviceInfo read_device_info() {
  DeviceInfo info;
  info.cores = static_cast<int>(std::thread::hardware_concurrency());

#if defined(FBNET_DEVICE_LINUX)
  long conf = sysconf(_SC_NPROCESSORS_CONF);
  if (conf > 0) info.cores = static_cast<int>(conf);

  info.cpu_model = cpuinfo_model();
#if defined(__ANDROID__)
  {
    std::string soc = android_prop("ro.soc.model");
    std::string maker = android_prop("ro.soc.manufacturer");
    if (!soc.empty()) {
      std::string soc_name = maker.empty() ? soc : maker + " " + soc;
      info.cpu_model =
          info.cpu_model.empty() ? soc_name : soc_name + " (" + info.cpu_model + ")";
    } else if (info.cpu_model.empty()) {
      info.cpu_model = android_prop("ro.board.platform");
    }
  }
#endif

  bool any_freq = false, any_gov = false;
  std::vector<int64_t> freqs;
  std::vector<std::string> govs;
  for (int cpu = 0; cpu < info.cores; ++cpu) {
    std::string base =
        "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cpufreq/";
    std::string v;
    int64_t khz = -1;
    if (read_first_line(base + "cpuinfo_max_freq", &v)) {
      try {
        khz = std::stoll(v);
        any_freq = true;
      } catch (...) {
        khz = -1;
      }
    }
    freqs.push_back(khz);
    std::string gov;
    if (read_first_line(base + "scaling_governor", &gov) && !gov.empty()) {
      any_gov = true;
    }
    govs.push_back(gov);
  }
  if (any_freq) info.max_freq_khz = freqs;
  if (any_gov) info.governor = govs;

  struct utsname u;
  if (uname(&u) == 0) {
    info.os = std::string(u.sysname) + " " + u.release + " " + u.machine;
  }
#if defined(__ANDROID__)
  {
    std::string rel = android_prop("ro.build.version.release");
    std::string model = android_prop("ro.product.model");
    std::string prefix = "Android";
    if (!rel.empty()) prefix += " " + rel;
    if (!model.empty()) prefix += " on " + model;
    info.os = prefix + " (" + info.os + ")";
  }
#endif

#elif defined(__APPLE__)
  {
    char buf[256];
    size_t len = sizeof(buf);
    if (sysctlbyname("machdep.cpu.brand_string", buf, &len, nullptr, 0) == 0 &&
        len > 0) {
      info.cpu_model = std::string(buf, strnlen(buf, len));
    }
    len = sizeof(buf);
    if (sysctlbyname("hw.machine", buf, &len, nullptr, 0) == 0 && len > 0) {
      std::string machine(buf, strnlen(buf, len));
      info.cpu_model =
          info.cpu_model.empty() ? machine : info.cpu_model + " (" + machine + ")";
    }
    int ncpu = 0;
    len = sizeof(ncpu);
    if (sysctlbyname("hw.ncpu", &ncpu, &len, nullptr, 0) == 0 && ncpu > 0) {
      info.cores = ncpu;
    }
    struct utsname u;
    if (uname(&u) == 0) {
      info.os = std::string(u.sysname) + " " + u.release + " " + u.machine;
    }
  }
#else
  info.os = "unknown";
#endif
  return info;
}

}  // namespace fbnet_bench
