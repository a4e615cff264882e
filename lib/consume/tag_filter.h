// TagFilter: a consumer's tag expression, RocketMQ style.
//
//   expression := "*" | tag ( "||" tag )*
//
// "*" (or an empty expression) accepts every message; otherwise a message is
// accepted when any of its tags is one of the listed tags (a message
// without tags is not). Spaces and tabs around tags are ignored. On the
// stored record in place: no body is copied.
//
// A value type; thread-compatible (const methods may run concurrently).

#ifndef TXMQ_LIB_CONSUME_TAG_FILTER_H_
#define TXMQ_LIB_CONSUME_TAG_FILTER_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "txmq/message.h"

namespace txmq {

class TagFilter {
 public:
  // Errors: INVALID_ARGUMENT naming the bad part of the expression.
  static absl::StatusOr<TagFilter> Parse(std::string_view expression);

  bool accepts_all() const { return accept_all_; }
  // Whether `message` passes (decodes its tags from the record).
  bool Accepts(const MessageView& message) const;

 private:
  bool accept_all_ = true;
  absl::flat_hash_set<std::string> tags_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_TAG_FILTER_H_
