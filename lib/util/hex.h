// Fixed-size ids as hex text (message and transaction ids).

#ifndef TXMQ_LIB_UTIL_HEX_H_
#define TXMQ_LIB_UTIL_HEX_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace txmq {

template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * N, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

// Parses exactly 2*N hex digits (either case). Returns false otherwise.
template <size_t N>
bool ParseHex(std::string_view text, std::array<uint8_t, N>* bytes) {
  auto value = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    const int hi = value(text[2 * i]);
    const int lo = value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*bytes)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

}  // namespace txmq

#endif  // TXMQ_LIB_UTIL_HEX_H_
