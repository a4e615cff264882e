// MessageId and MessageView (include/txmq/message.h).

#include "txmq/message.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "log/message_view_decoder.h"
#include "log/record_layout.h"
#include "record.capnp.h"
#include "storage/keys.h"
#include "util/hex.h"

namespace txmq {
namespace {

std::string_view ViewOf(capnp::Text::Reader text) {
  return std::string_view(text.begin(), text.size());
}

std::string_view ViewOf(capnp::Data::Reader data) {
  return std::string_view(reinterpret_cast<const char*>(data.begin()),
                          data.size());
}

// The root of a stored record. The record was validated when its view was
// made (FromRecord), so a failure here means the memory changed under us.
template <typename F>
auto WithRoot(std::string_view record, F&& f) {
  kj::ArrayPtr<const capnp::word> words(
      reinterpret_cast<const capnp::word*>(record.data()), record.size() / 8);
  capnp::FlatArrayMessageReader reader(words);
  return f(reader.getRoot<schema::MessageRecord>());
}

}  // namespace

MessageId MessageId::FromBytes(const std::array<uint8_t, kSize>& bytes) {
  MessageId id;
  id.bytes_ = bytes;
  return id;
}

MessageId MessageId::Make(int64_t store_time_ms, uint32_t queue_number,
                          uint64_t offset) {
  MessageId id;
  char* out = reinterpret_cast<char*>(id.bytes_.data());
  PutBigEndian(static_cast<uint64_t>(store_time_ms), 6, out);
  PutBigEndian(queue_number, 4, out + 6);
  PutBigEndian(offset, 6, out + 10);
  return id;
}

absl::StatusOr<MessageId> MessageId::Parse(std::string_view text) {
  MessageId id;
  if (!ParseHex(text, &id.bytes_)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message id '%s' is not 32 hex digits", std::string(text)));
  }
  return id;
}

std::string MessageId::ToString() const { return ToHex(bytes_); }

int64_t MessageId::store_time_ms() const {
  return static_cast<int64_t>(
      GetBigEndian(reinterpret_cast<const char*>(bytes_.data()), 6));
}

uint32_t MessageId::queue_number() const {
  return static_cast<uint32_t>(
      GetBigEndian(reinterpret_cast<const char*>(bytes_.data()) + 6, 4));
}

uint64_t MessageId::offset() const {
  return GetBigEndian(reinterpret_cast<const char*>(bytes_.data()) + 10, 6);
}

namespace {

absl::Status NotWords(std::string_view record) {
  return absl::DataLossError(absl::StrFormat(
      "message record of %d bytes is not whole aligned words; the data "
      "file is damaged (run 'txmq verify')",
      record.size()));
}

absl::Status Undecodable(const kj::Exception& e) {
  return absl::DataLossError(absl::StrFormat(
      "message record does not decode (%s); the data file is damaged (run "
      "'txmq verify')",
      e.getDescription().cStr()));
}

bool AlignedWords(std::string_view record) {
  return record.size() % 8 == 0 &&
         reinterpret_cast<uintptr_t>(record.data()) % 8 == 0;
}

}  // namespace

namespace internal {

absl::Status MessageViewDecoder::DecodeSlow(std::string_view record,
                                            std::string_view topic,
                                            MessageView* out) {
  if (!AlignedWords(record)) return NotWords(record);
  HotFields hot;
  if (ReadHotFields(record, &hot) == LayoutResult::kMalformed) {
    return absl::DataLossError(
        "message record is malformed; the data file is damaged (run 'txmq "
        "verify')");
  }
  try {
    WithRoot(record, [&](schema::MessageRecord::Reader root) {
      out->record_ = record;
      out->topic_ = topic;
      out->key_ = ViewOf(root.getKey());
      out->body_ = ViewOf(root.getBody());
      const capnp::Data::Reader id = root.getId();
      if (id.size() == MessageId::kSize) {
        std::array<uint8_t, MessageId::kSize> bytes;
        std::memcpy(bytes.data(), id.begin(), MessageId::kSize);
        out->id_ = MessageId::FromBytes(bytes);
      }
      out->queue_ = root.getQueue();
      out->offset_ = root.getOffset();
      out->born_ms_ = root.getBornTimeMs();
      out->store_ms_ = root.getStoreTimeMs();
    });
  } catch (const kj::Exception& e) {
    return Undecodable(e);
  }
  return absl::OkStatus();
}

absl::Status MessageViewDecoder::DecodeCopy(std::string_view record,
                                            std::string_view topic,
                                            uint64_t copy_offset,
                                            MessageView* out) {
  if (absl::Status s = Decode(record, topic, out); !s.ok()) return s;
  try {
    WithRoot(out->record_, [&](schema::MessageRecord::Reader root) {
      out->reconsume_times_ = root.getReconsumeTimes();
      if (!root.hasOrigin()) return;
      const schema::Origin::Reader origin = root.getOrigin();
      const capnp::Data::Reader id = origin.getId();
      if (id.size() == MessageId::kSize) {
        std::memcpy(out->id_.bytes_.data(), id.begin(), MessageId::kSize);
      }
      out->queue_ = origin.getQueue();
      out->offset_ = origin.getOffset();
      out->store_ms_ = origin.getStoreTimeMs();
    });
  } catch (const kj::Exception& e) {
    return Undecodable(e);
  }
  out->copy_offset_ = copy_offset;
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<MessageView> MessageView::FromRecord(std::string_view record) {
  if (!AlignedWords(record)) return NotWords(record);
  MessageView view;
  try {
    std::string_view topic;
    WithRoot(record, [&](schema::MessageRecord::Reader root) {
      topic = ViewOf(root.getTopic());
      view.reconsume_times_ = root.getReconsumeTimes();
      // Walk the lists once so that damage shows here, not later.
      for (auto tag : root.getTags()) (void)tag;
      for (auto prop : root.getProperties()) {
        (void)prop.getName();
        (void)prop.getValue();
      }
    });
    if (absl::Status s =
            internal::MessageViewDecoder::Decode(record, topic, &view);
        !s.ok()) {
      return s;
    }
  } catch (const kj::Exception& e) {
    return Undecodable(e);
  }
  return view;
}

std::vector<std::string_view> MessageView::tags() const {
  std::vector<std::string_view> out;
  if (record_.empty()) return out;
  try {
    WithRoot(record_, [&](schema::MessageRecord::Reader root) {
      for (auto tag : root.getTags()) out.push_back(ViewOf(tag));
    });
  } catch (const kj::Exception&) {
    // A damaged record: return what decoded.
  }
  return out;
}

std::vector<std::pair<std::string_view, std::string_view>>
MessageView::properties() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  if (record_.empty()) return out;
  try {
    WithRoot(record_, [&](schema::MessageRecord::Reader root) {
      for (auto prop : root.getProperties()) {
        out.emplace_back(ViewOf(prop.getName()), ViewOf(prop.getValue()));
      }
    });
  } catch (const kj::Exception&) {
    // A damaged record: return what decoded.
  }
  return out;
}

std::optional<std::string_view> MessageView::property(
    std::string_view name) const {
  std::optional<std::string_view> out;
  if (record_.empty()) return out;
  try {
    WithRoot(record_, [&](schema::MessageRecord::Reader root) {
      for (auto prop : root.getProperties()) {
        if (ViewOf(prop.getName()) == name) {
          out = ViewOf(prop.getValue());
          return;
        }
      }
    });
  } catch (const kj::Exception&) {
    // A damaged record: not found.
  }
  return out;
}

}  // namespace txmq
