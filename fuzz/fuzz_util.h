// Helpers shared by the fuzz targets (fuzz/README.md).

#ifndef TXMQ_FUZZ_FUZZ_UTIL_H_
#define TXMQ_FUZZ_FUZZ_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace txmq::fuzz {

// `size` bytes of `data` copied to 8-byte-aligned storage (as LMDB and
// Cap'n Proto hand them out), zero-padded to a whole word.
class Aligned {
 public:
  Aligned(const uint8_t* data, size_t size)
      : words_(size / 8 + 1, 0), size_(size) {
    if (size != 0) std::memcpy(words_.data(), data, size);
  }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(words_.data()), size_};
  }
  const std::vector<uint64_t>& words() const { return words_; }

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

// A property the target checks failed: report and stop (libFuzzer saves
// the input as a crash).
[[noreturn]] inline void Fail(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace txmq::fuzz

#endif  // TXMQ_FUZZ_FUZZ_UTIL_H_
