// The consumer's fast path for turning a stored record into a MessageView.

#ifndef TXMQ_LIB_LOG_MESSAGE_VIEW_DECODER_H_
#define TXMQ_LIB_LOG_MESSAGE_VIEW_DECODER_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "log/record_layout.h"
#include "txmq/message.h"

namespace txmq::internal {

class MessageViewDecoder {
 public:
  // Decodes the fields MessageView returns directly (id, queue, offset, key,
  // body, times) from `record` (8-byte aligned) into `out`. The topic name
  // is not decoded: `topic` is used instead and must outlive the view (the
  // consumer knows which topic it reads). Tags and properties stay encoded
  // until asked for. Errors: DATA_LOSS when the record does not decode.
  static absl::Status Decode(std::string_view record, std::string_view topic,
                             MessageView* out) {
    HotFields hot;
    if (reinterpret_cast<uintptr_t>(record.data()) % 8 == 0 &&
        record.size() % 8 == 0 &&
        ReadHotFields(record, &hot) == LayoutResult::kOk) {
      out->record_ = record;
      out->topic_ = topic;
      out->key_ = hot.key;
      out->body_ = hot.body;
      if (hot.id.size() == MessageId::kSize) {
        std::memcpy(out->id_.bytes_.data(), hot.id.data(), MessageId::kSize);
      }
      out->queue_ = hot.queue;
      out->offset_ = hot.offset;
      out->born_ms_ = hot.born_ms;
      out->store_ms_ = hot.store_ms;
      return absl::OkStatus();
    }
    return DecodeSlow(record, topic, out);
  }

  static constexpr uint64_t kNotACopy = MessageView::kNotACopy;
  // Where a consumer read `view` when it is a copy from a retry queue, else
  // kNotACopy.
  static uint64_t CopyOffset(const MessageView& view) {
    return view.copy_offset_;
  }

  // For redeliveries that are not copies (ordered consumers).
  static void SetReconsumeTimes(MessageView& view, uint32_t times) {
    view.reconsume_times_ = times;
  }

  // Decodes a copy read from a consumer group's retry queue at
  // `copy_offset`: as Decode, then the origin's id, queue, offset and store
  // time replace the copy's, and reconsume_times is set. Slower (Cap'n
  // Proto's reader); copies are rare.
  static absl::Status DecodeCopy(std::string_view record,
                                 std::string_view topic, uint64_t copy_offset,
                                 MessageView* out);

 private:
  // Unaligned input, damaged records, and records the fast reader leaves to
  // Cap'n Proto.
  static absl::Status DecodeSlow(std::string_view record,
                                 std::string_view topic, MessageView* out);
};

}  // namespace txmq::internal

#endif  // TXMQ_LIB_LOG_MESSAGE_VIEW_DECODER_H_
