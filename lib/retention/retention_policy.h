// Retention times: the public absl::Duration, the in-memory milliseconds
// (Topic::retention_ms) and the stored TopicRecord.retentionMs.
//
//   public                      memory (Topic)        disk (retentionMs)
//   absl::InfiniteDuration()    kKeepForever (-1)     -1
//   1 s .. 100 years            milliseconds          milliseconds
//   (a record older than retention)                   0 = kDefaultRetention
//
// Pure functions; any thread.

#ifndef TXMQ_LIB_RETENTION_RETENTION_POLICY_H_
#define TXMQ_LIB_RETENTION_RETENTION_POLICY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace txmq {

// TopicOptions::retention's default, and what a TopicRecord written before
// retention existed (retentionMs 0) means.
inline constexpr absl::Duration kDefaultRetention = absl::Hours(72);
// Topic::retention_ms and TopicRecord.retentionMs for "keep forever".
inline constexpr int64_t kKeepForever = -1;

// The milliseconds to keep and store for `retention`. Errors:
// INVALID_ARGUMENT for anything but absl::InfiniteDuration() or a duration
// from 1 second to 100 years.
absl::StatusOr<int64_t> RetentionMs(absl::Duration retention);

// The in-memory milliseconds for a stored retentionMs (0: the default).
int64_t RetentionMsFromRecord(int64_t stored);

// The public form of Topic::retention_ms.
absl::Duration RetentionDuration(int64_t ms);

}  // namespace txmq

#endif  // TXMQ_LIB_RETENTION_RETENTION_POLICY_H_
