// What the crash-torture child (torture_child.cc) and its test
// (torture_test.cc) agree on.

#ifndef TXMQ_TESTS_TORTURE_TORTURE_COMMON_H_
#define TXMQ_TESTS_TORTURE_TORTURE_COMMON_H_

#include <cstdint>
#include <string>

namespace txmq::torture {

// The body of the message sent with `token` (its key): 0 to ~4 KiB, the
// token repeated, so that a body that comes back can be checked byte for
// byte.
inline std::string BodyOf(const std::string& token) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : token) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  const size_t size = hash % 4096;
  std::string body;
  body.reserve(size + token.size());
  while (body.size() < size) body += token;
  body.resize(size);
  return body;
}

}  // namespace txmq::torture

#endif  // TXMQ_TESTS_TORTURE_TORTURE_COMMON_H_
