// The one place where the public API's std::string_view meets Abseil.
//
// Debian's Abseil 20220623 keeps its own absl::string_view (a different type
// from std::string_view), so absl::StrCat and absl::Status do not accept a
// std::string_view. Convert here, nowhere else.

#ifndef TXMQ_LIB_UTIL_STRINGS_H_
#define TXMQ_LIB_UTIL_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace txmq {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline std::string_view ToStd(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

}  // namespace txmq

#endif  // TXMQ_LIB_UTIL_STRINGS_H_
