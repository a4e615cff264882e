// Fixed-width big-endian integers, so that LMDB's bytewise key order is the
// numeric order. Every key layout is written down in docs/format.md.

#ifndef TXMQ_LIB_STORAGE_KEYS_H_
#define TXMQ_LIB_STORAGE_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace txmq {

inline void PutBigEndian(uint64_t v, size_t width, char* out) {
  for (size_t i = 0; i < width; ++i) {
    out[width - 1 - i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

inline uint64_t GetBigEndian(const char* in, size_t width) {
  if (width == 8) {  // the hot case (offset keys): one load and a bswap
    uint64_t v;
    std::memcpy(&v, in, 8);
    return __builtin_bswap64(v);
  }
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) {
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  }
  return v;
}

inline void AppendBigEndian(uint64_t v, size_t width, std::string* out) {
  const size_t at = out->size();
  out->resize(at + width);
  PutBigEndian(v, width, out->data() + at);
}

// The key of a message in its queue table: the offset, 8 bytes big-endian.
struct OffsetKey {
  explicit OffsetKey(uint64_t offset) { PutBigEndian(offset, 8, bytes); }
  std::string_view view() const { return std::string_view(bytes, 8); }
  char bytes[8];
};

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_KEYS_H_
