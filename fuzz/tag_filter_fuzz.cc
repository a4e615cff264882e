// Tag-filter expressions (ConsumerOptions::tag_filter, a remote client's
// subscribe): parsing never crashes, and a filter that parses accepts
// exactly what the grammar in lib/consume/tag_filter.h says.
//
// Input: the expression, then '\n', then the message's tags, one per line.

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "consume/tag_filter.h"
#include "fuzz_util.h"
#include "log/message_view_decoder.h"
#include "log/record_codec.h"

namespace {

// `text` split at every `sep` (std::string_view: absl 20220623's
// string_view is another type).
std::vector<std::string_view> Split(std::string_view text,
                                    std::string_view sep) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + sep.size());
  }
}

// The grammar's spaces: ' ' and '\t'.
std::string_view Trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const std::string_view expression = input.substr(0, nl);
  absl::StatusOr<txmq::TagFilter> filter = txmq::TagFilter::Parse(expression);
  if (!filter.ok() || nl == std::string_view::npos) return 0;

  txmq::Message message{.topic = "t", .body = "b"};
  for (std::string_view tag : Split(input.substr(nl + 1), "\n")) {
    message.tags.emplace_back(tag);
  }
  absl::StatusOr<txmq::PendingRecord> record =
      txmq::PendingRecord::Encode(message, 0, 1 << 20);
  if (!record.ok()) return 0;  // tags the broker refuses
  std::string bytes(record->size(), '\0');
  record->WriteTo(bytes.data());
  const txmq::fuzz::Aligned aligned(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  txmq::MessageView view;
  if (!txmq::internal::MessageViewDecoder::Decode(aligned.view(), "t", &view)
           .ok()) {
    txmq::fuzz::Fail("a record the encoder wrote does not decode");
  }

  // The grammar: "*" or empty accepts all; else any listed tag, trimmed.
  bool expected = false;
  const std::string_view trimmed = Trim(expression);
  if (trimmed.empty() || trimmed == "*") {
    expected = true;
  } else {
    std::set<std::string> listed;
    for (std::string_view part : Split(trimmed, "||")) {
      listed.emplace(Trim(part));
    }
    for (const std::string& tag : message.tags) {
      expected |= listed.contains(tag);
    }
  }
  if (filter->Accepts(view) != expected) {
    txmq::fuzz::Fail("the filter disagrees with its grammar");
  }
  return 0;
}
