// Helpers shared by the test folders.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>
#include <string>

namespace autosp::testing {

// This process's scratch directory under /tmp, created on first use and removed when the test
// binary exits. Per process, so ctest -j runs of different cases never share files.
inline const std::filesystem::path& scratch_dir() {
  static struct Scratch {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("autosp_test_" + std::to_string(::getpid()));
    Scratch() { std::filesystem::create_directories(path); }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } s;
  return s.path;
}

// A fresh path in the scratch directory (anything already there is removed).
inline std::string scratch_path(const std::string& name) {
  auto p = scratch_dir() / name;
  std::filesystem::remove_all(p);
  return p.string();
}

// A fresh, empty directory in the scratch directory.
inline std::filesystem::path fresh_dir(const std::string& name) {
  std::filesystem::path d = scratch_path(name);
  std::filesystem::create_directories(d);
  return d;
}

// The names in directory d, sorted.
inline std::vector<std::string> dir_entries(const std::filesystem::path& d) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace autosp::testing
