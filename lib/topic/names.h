// Names of topics and consumer groups.
//
// A name is 1 to 127 bytes of [A-Za-z0-9_.-]. Names beginning with '%' are
// the broker's own (RocketMQ's convention): "%RETRY%<group>%<topic>" holds
// a group's retries of a topic's messages, "%DLQ%<group>" its dead letters,
// and "%SYS%" prefixes internal groups. A user may not create them. User
// names never contain '%', so the topic of a retry topic is what follows
// its last '%'.

#ifndef TXMQ_LIB_TOPIC_NAMES_H_
#define TXMQ_LIB_TOPIC_NAMES_H_

#include <cstddef>
#include <string>
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

// Validates a group name as listings show it: a group, or a broadcasting
// instance's "<group>%<instance>" (both parts valid group names).
absl::Status ValidateProgressName(std::string_view name);

std::string RetryTopicName(std::string_view group, std::string_view topic);
std::string DeadLetterTopicName(std::string_view group);
// The group's progress through its dead-letter queue (what was re-driven).
inline constexpr std::string_view kRedriveGroup = "%SYS%redrive";
// True for "%RETRY%...%<topic>".
bool IsRetryTopicOf(std::string_view name, std::string_view topic);

}  // namespace txmq

#endif  // TXMQ_LIB_TOPIC_NAMES_H_
