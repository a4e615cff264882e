#include "consume/tag_filter.h"

#include "absl/strings/str_format.h"
#include "log/record_codec.h"
#include "log/record_layout.h"
#include "util/strings.h"

namespace txmq {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

absl::StatusOr<TagFilter> TagFilter::Parse(std::string_view expression) {
  TagFilter filter;
  expression = Trim(expression);
  if (expression.empty() || expression == "*") return filter;
  filter.accept_all_ = false;
  while (true) {
    const size_t bar = expression.find("||");
    const std::string_view tag = Trim(expression.substr(0, bar));
    if (tag.empty() || tag.size() > kMaxTagBytes ||
        tag.find('|') != std::string_view::npos || tag == "*") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tag filter: '%s' is not a tag; write '*' or 'TagA || TagB' (tags "
          "of 1 to %d bytes, no '|')",
          std::string(tag), kMaxTagBytes));
    }
    filter.tags_.emplace(tag);
    if (bar == std::string_view::npos) break;
    expression = expression.substr(bar + 2);
  }
  return filter;
}

bool TagFilter::Accepts(const MessageView& message) const {
  if (accept_all_) return true;
  bool matched = false;
  const LayoutResult r =
      ForEachTag(message.record(), [&](std::string_view tag) {
        matched = tags_.contains(ToAbsl(tag));
        return matched;
      });
  if (r == LayoutResult::kUnsupported) {
    for (std::string_view tag : message.tags()) {
      if (tags_.contains(ToAbsl(tag))) return true;
    }
  }
  return matched;
}

}  // namespace txmq
