#include "topic/names.h"

#include <string>

#include "absl/strings/str_format.h"

namespace txmq {

absl::Status ValidateName(std::string_view name, NameKind kind) {
  const char* what = kind == NameKind::kTopic ? "topic" : "group";
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s name is empty", what));
  }
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s name '%s...' is %d bytes; the limit is %d", what,
        std::string(name.substr(0, 32)), name.size(), kMaxNameBytes));
  }
  for (std::string_view prefix :
       {kRetryPrefix, kDeadLetterPrefix, kSystemPrefix}) {
    if (name.substr(0, prefix.size()) == prefix) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s name '%s' uses the reserved prefix '%s'; the broker creates "
          "those itself",
          what, std::string(name), std::string(prefix)));
    }
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s name '%s' contains '%s'; use only letters, digits, '_', '-' "
          "and '.'",
          what, std::string(name),
          (c >= 32 && c < 127) ? std::string(1, c)
                               : absl::StrFormat("\\x%02x", c & 0xff)));
    }
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s name '%s' is reserved", what, std::string(name)));
  }
  return absl::OkStatus();
}

}  // namespace txmq
