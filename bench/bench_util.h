// Helpers shared by the benchmark files of txmq_bench.

#ifndef TXMQ_BENCH_BENCH_UTIL_H_
#define TXMQ_BENCH_BENCH_UTIL_H_

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace txmq::bench {

inline constexpr size_t kValueBytes = 128;
inline constexpr int kScanRecords = 1000000;

// A fresh directory under $TXMQ_BENCH_DIR (default /tmp).
inline std::string MakeTempDir(const char* tag) {
  const char* base = getenv("TXMQ_BENCH_DIR");
  std::string tmpl =
      std::string(base != nullptr ? base : "/tmp") + "/txmq-" + tag + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

inline void RemoveDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// Directories of the fixtures that live for the whole run (filled once,
// they are large); removed at exit.
inline std::vector<std::string>& RunLongDirs() {
  static auto* dirs = [] {
    auto* d = new std::vector<std::string>;
    std::atexit([] {
      for (const std::string& dir : RunLongDirs()) RemoveDir(dir);
    });
    return d;
  }();
  return *dirs;
}

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

}  // namespace txmq::bench

#endif  // TXMQ_BENCH_BENCH_UTIL_H_
