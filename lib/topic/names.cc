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

absl::Status ValidateProgressName(std::string_view name) {
  const size_t cut = name.find('%');
  if (cut == std::string_view::npos || cut == 0) {
    return ValidateName(name, NameKind::kGroup);
  }
  if (absl::Status s = ValidateName(name.substr(0, cut), NameKind::kGroup);
      !s.ok()) {
    return s;
  }
  return ValidateName(name.substr(cut + 1), NameKind::kGroup);
}

std::string RetryTopicName(std::string_view group, std::string_view topic) {
  std::string name(kRetryPrefix);
  name.append(group);
  name.push_back('%');
  name.append(topic);
  return name;
}

std::string DeadLetterTopicName(std::string_view group) {
  std::string name(kDeadLetterPrefix);
  name.append(group);
  return name;
}

bool IsRetryTopicOf(std::string_view name, std::string_view topic) {
  if (name.substr(0, kRetryPrefix.size()) != kRetryPrefix) return false;
  const size_t last = name.rfind('%');
  return last >= kRetryPrefix.size() && name.substr(last + 1) == topic;
}

}  // namespace txmq
