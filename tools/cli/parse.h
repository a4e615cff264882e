// Parsing the CLI's values: durations, timestamps, properties.
//
// Each returns INVALID_ARGUMENT with a message that says what was expected;
// none throws. (They are a fuzz target: fuzz/cli_parse_fuzz.cc.)

#ifndef TXMQ_TOOLS_CLI_PARSE_H_
#define TXMQ_TOOLS_CLI_PARSE_H_

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace txmq::cli {

// A positive duration: a number and a unit, optionally repeated: "500ms",
// "30s", "1h30m", "72h", "7d" (units ns, us, ms, s, m, h, d).
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// A retention: a duration as above, or "forever".
absl::StatusOr<absl::Duration> ParseRetention(std::string_view text);

// A point in time: ISO-8601 / RFC 3339 ("2026-11-26T09:30:00Z", with
// optional fractional seconds and a numeric offset; without a zone it is
// UTC; a date alone is its midnight UTC), or Unix milliseconds (digits
// only).
absl::StatusOr<absl::Time> ParseTimestamp(std::string_view text);

// "name=value" (the value may be empty and may contain '=').
absl::StatusOr<std::pair<std::string, std::string>> ParseProperty(
    std::string_view text);

}  // namespace txmq::cli

#endif  // TXMQ_TOOLS_CLI_PARSE_H_
