// Device description recorded with every result (see docs/bench-protocol.md).
//
// This is the only unit with platform-specific code: Linux/Android read
// /proc/cpuinfo, /sys/devices/system/cpu/cpu*/cpufreq and uname(); Apple
// platforms use sysctl and uname(); anything else reports what the C++
// standard library knows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fbnet_bench {

struct DeviceInfo {
  std::string cpu_model;  // "" when unknown
  int cores = 0;          // logical CPUs configured in the system
  // Per core (index = CPU number): cpuinfo_max_freq in kHz, -1 when that core
  // has no readable value. Empty when no core has one (e.g. containers, iOS).
  std::vector<int64_t> max_freq_khz;
  // Per core: scaling_governor, "" when unreadable. Empty when none readable.
  std::vector<std::string> governor;
  std::string os;  // e.g. "Linux 6.1.0-18-amd64 x86_64", "Android 14 (Linux ...)"
};

DeviceInfo read_device_info();

}  // namespace fbnet_bench
