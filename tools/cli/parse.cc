#include "cli/parse.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace txmq::cli {
namespace {

// The longest accepted: 100 years (retention's limit).
constexpr absl::Duration kMaxDuration = absl::Hours(24 * 36525);

absl::Status BadDuration(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "'%s' is not a duration (%s); write for example 500ms, 30s, 1h30m, "
      "72h or 7d",
      std::string(text), std::string(why)));
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  if (text.empty()) return BadDuration(text, "it is empty");
  if (AllDigits(text)) return BadDuration(text, "it has no unit");
  absl::Duration total = absl::ZeroDuration();
  std::string_view rest = text;
  while (!rest.empty()) {
    // A number (digits, optionally with a fraction) ...
    size_t n = 0;
    while (n < rest.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(rest[n])) ||
            rest[n] == '.')) {
      ++n;
    }
    if (n == 0) return BadDuration(text, "expected a number");
    double value = 0;
    if (!absl::SimpleAtod(std::string(rest.substr(0, n)), &value)) {
      return BadDuration(text, "bad number");
    }
    rest.remove_prefix(n);
    // ... and a unit.
    size_t u = 0;
    while (u < rest.size() &&
           absl::ascii_isalpha(static_cast<unsigned char>(rest[u]))) {
      ++u;
    }
    const std::string_view unit = rest.substr(0, u);
    rest.remove_prefix(u);
    absl::Duration one;
    if (unit == "ns") {
      one = absl::Nanoseconds(1);
    } else if (unit == "us") {
      one = absl::Microseconds(1);
    } else if (unit == "ms") {
      one = absl::Milliseconds(1);
    } else if (unit == "s") {
      one = absl::Seconds(1);
    } else if (unit == "m") {
      one = absl::Minutes(1);
    } else if (unit == "h") {
      one = absl::Hours(1);
    } else if (unit == "d") {
      one = absl::Hours(24);
    } else if (unit.empty()) {
      return BadDuration(text, "a number has no unit");
    } else {
      return BadDuration(
          text, absl::StrCat("unknown unit '", std::string(unit), "'"));
    }
    if (value > 1e12) return BadDuration(text, "too long");
    total += value * one;
    if (total > kMaxDuration) return BadDuration(text, "longer than 100 years");
  }
  if (total <= absl::ZeroDuration()) {
    return BadDuration(text, "it must be positive");
  }
  return total;
}

absl::StatusOr<absl::Duration> ParseRetention(std::string_view text) {
  if (text == "forever") return absl::InfiniteDuration();
  absl::StatusOr<absl::Duration> d = ParseDuration(text);
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(d.status().message(), ", or forever"));
  }
  return d;
}

absl::StatusOr<absl::Time> ParseTimestamp(std::string_view text) {
  const std::string s(text);
  if (AllDigits(text)) {
    int64_t ms = 0;
    if (text.size() > 15 || !absl::SimpleAtoi(s, &ms)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("'%s' is too large for Unix milliseconds", s));
    }
    return absl::FromUnixMillis(ms);
  }
  absl::Time t;
  std::string err;
  for (const char* format :
       {"%Y-%m-%d%ET%H:%M:%E*S%Ez", "%Y-%m-%d%ET%H:%M:%E*S", "%Y-%m-%d"}) {
    if (absl::ParseTime(format, s, absl::UTCTimeZone(), &t, &err)) {
      if (t < absl::FromUnixSeconds(0) ||
          t > absl::FromUnixSeconds(int64_t{253402300799})) {
        break;  // before 1970 or after 9999
      }
      return t;
    }
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "'%s' is not a timestamp; write ISO-8601 in UTC "
      "(2026-11-26T09:30:00Z, 2026-11-26T09:30:00.250Z, 2026-11-26) or Unix "
      "milliseconds (1795685400000)",
      s));
}

absl::StatusOr<std::pair<std::string, std::string>> ParseProperty(
    std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a property; write name=value", std::string(text)));
  }
  return std::make_pair(std::string(text.substr(0, eq)),
                        std::string(text.substr(eq + 1)));
}

}  // namespace txmq::cli
