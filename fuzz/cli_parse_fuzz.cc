// The CLI's own parsers (tools/cli/parse.h): durations ("7d", "1h30m"),
// retentions, timestamps (RFC 3339, a bare date, Unix time) and
// properties (NAME=VALUE). Never a crash; what parses is in range.

#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "cli/parse.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = txmq::cli::ParseDuration(text); d.ok()) {
    if (*d <= absl::ZeroDuration()) txmq::fuzz::Fail("a duration <= 0");
  }
  if (auto r = txmq::cli::ParseRetention(text); r.ok()) {
    if (*r <= absl::ZeroDuration()) txmq::fuzz::Fail("a retention <= 0");
  }
  (void)txmq::cli::ParseTimestamp(text);
  if (auto p = txmq::cli::ParseProperty(text); p.ok()) {
    if (p->first.empty()) txmq::fuzz::Fail("a property without a name");
  }
  return 0;
}
