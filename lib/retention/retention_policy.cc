#include "retention/retention_policy.h"

#include "absl/strings/str_format.h"

namespace txmq {

absl::StatusOr<int64_t> RetentionMs(absl::Duration retention) {
  if (retention == absl::InfiniteDuration()) return kKeepForever;
  // The upper bound keeps "now - retention" far from overflow.
  if (retention < absl::Seconds(1) || retention > absl::Hours(24 * 36525)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a topic's retention must be between 1 second and 100 years, or "
        "absl::InfiniteDuration() to keep messages forever; got %s",
        absl::FormatDuration(retention)));
  }
  return absl::ToInt64Milliseconds(retention);
}

int64_t RetentionMsFromRecord(int64_t stored) {
  if (stored == 0) return absl::ToInt64Milliseconds(kDefaultRetention);
  return stored < 0 ? kKeepForever : stored;
}

absl::Duration RetentionDuration(int64_t ms) {
  return ms == kKeepForever ? absl::InfiniteDuration() : absl::Milliseconds(ms);
}

}  // namespace txmq
