// Stored message records from the data file, as bytes a damaged or hostile
// file could hold: every decoder of a record must return DATA_LOSS (or
// decode) and never read out of bounds. And the two decoders must agree:
// when the fast in-place reader (lib/log/record_layout.h) accepts a
// record, Cap'n Proto's reader (the fallback for unaligned input) gives the
// same fields.

#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "log/message_view_decoder.h"
#include "log/record_codec.h"
#include "txmq/message.h"

namespace {

using txmq::MessageView;
using txmq::internal::MessageViewDecoder;

size_t Touch(const MessageView& m) {
  size_t n = m.key().size() + m.body().size() + m.id().ToString().size();
  for (std::string_view tag : m.tags()) n += tag.size();
  for (const auto& [name, value] : m.properties()) {
    n += name.size() + value.size();
  }
  n += m.property("p").has_value();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const txmq::fuzz::Aligned aligned(data, size);
  const std::string_view record = aligned.view();

  MessageView fast;
  const bool fast_ok = MessageViewDecoder::Decode(record, "t", &fast).ok();
  if (fast_ok) Touch(fast);

  // The same bytes, unaligned: the Cap'n Proto path.
  std::string shifted(size + 1, '\0');
  if (size != 0) std::memcpy(shifted.data() + 1, data, size);
  MessageView slow;
  const bool slow_ok = MessageViewDecoder::Decode(
                           std::string_view(shifted).substr(1), "t", &slow)
                           .ok();
  if (slow_ok) Touch(slow);
  if (fast_ok && slow_ok) {
    if (fast.key() != slow.key()) txmq::fuzz::Fail("key differs");
    if (fast.body() != slow.body()) txmq::fuzz::Fail("body differs");
    if (!(fast.id() == slow.id())) txmq::fuzz::Fail("id differs");
    if (fast.queue() != slow.queue()) txmq::fuzz::Fail("queue differs");
    if (fast.offset() != slow.offset()) txmq::fuzz::Fail("offset differs");
    if (fast.born_time() != slow.born_time()) txmq::fuzz::Fail("born differs");
    if (fast.store_time() != slow.store_time()) {
      txmq::fuzz::Fail("store time differs");
    }
    if (fast.tags() != slow.tags()) txmq::fuzz::Fail("tags differ");
    if (fast.properties() != slow.properties()) {
      txmq::fuzz::Fail("properties differ");
    }
  }

  MessageView copy;
  if (MessageViewDecoder::DecodeCopy(record, "%RETRY%g", 7, &copy).ok()) {
    Touch(copy);
  }
  (void)txmq::PendingRecord::FromStored(record);
  (void)txmq::PendingRecord::ReconsumeTimesOf(record);
  (void)txmq::PendingRecord::CopyFor(record, "%DLQ%g", 3, 0);
  return 0;
}
