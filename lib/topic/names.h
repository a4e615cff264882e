// Names of topics and consumer groups.
//
// A name is 1 to 127 bytes of [A-Za-z0-9_.-]. Names beginning with '%' are
// the broker's own (RocketMQ's convention): "%RETRY%<group>" and
// "%DLQ%<group>" hold a group's retries and dead letters, and "%SYS%"
// prefixes internal topics. A user may not create them.

#ifndef TXMQ_LIB_TOPIC_NAMES_H_
#define TXMQ_LIB_TOPIC_NAMES_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace txmq {

inline constexpr size_t kMaxNameBytes = 127;
inline constexpr std::string_view kRetryPrefix = "%RETRY%";
inline constexpr std::string_view kDeadLetterPrefix = "%DLQ%";
inline constexpr std::string_view kSystemPrefix = "%SYS%";

enum class NameKind { kTopic, kGroup };

// Validates a name a user supplied. Errors: INVALID_ARGUMENT saying which
// rule the name breaks.
absl::Status ValidateName(std::string_view name, NameKind kind);

}  // namespace txmq

#endif  // TXMQ_LIB_TOPIC_NAMES_H_
