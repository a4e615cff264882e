#include "log/record_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/io.h>

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "log/stored_record.h"
#include "record.capnp.h"

namespace txmq {
namespace {

size_t Words(size_t bytes) { return (bytes + 7) / 8; }

absl::Status TooBig(std::string_view what, size_t size, size_t limit) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "message %s is %d bytes; the limit is %d bytes", what, size, limit));
}

absl::Status Validate(const Message& m) {
  if (m.key.size() > kMaxKeyBytes) {
    return TooBig("key", m.key.size(), kMaxKeyBytes);
  }
  if (m.tags.size() > kMaxTags) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message has %d tags; the limit is %d", m.tags.size(), kMaxTags));
  }
  for (const std::string& tag : m.tags) {
    if (tag.empty() || tag.size() > kMaxTagBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "message tag '%s' must be 1 to %d bytes", tag, kMaxTagBytes));
    }
    if (tag.find('|') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "message tag '%s' contains '|', which tag filters reserve", tag));
    }
  }
  if (m.properties.size() > kMaxProperties) {
    return absl::InvalidArgumentError(
        absl::StrFormat("message has %d properties; the limit is %d",
                        m.properties.size(), kMaxProperties));
  }
  absl::flat_hash_set<std::string_view> names;
  for (const auto& [name, value] : m.properties) {
    if (name.empty() || name.size() > kMaxPropertyNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("message property name '%s' must be 1 to %d bytes",
                          name, kMaxPropertyNameBytes));
    }
    if (value.size() > kMaxPropertyValueBytes) {
      return TooBig(absl::StrFormat("property '%s'", name), value.size(),
                    kMaxPropertyValueBytes);
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "message property '%s' appears twice; names must be unique", name));
    }
  }
  return absl::OkStatus();
}

// A generous estimate of the encoded size in words, so that the builder's
// first segment holds the whole record (one segment: a compact record).
size_t EstimateWords(const Message& m) {
  size_t words = 16 + Words(MessageId::kSize) + Words(m.topic.size() + 1) +
                 Words(m.key.size() + 1) + Words(m.body.size());
  words += m.tags.size();
  for (const std::string& tag : m.tags) words += Words(tag.size() + 1);
  words += 1 + 2 * m.properties.size();
  for (const auto& [name, value] : m.properties) {
    words += Words(name.size() + 1) + Words(value.size() + 1);
  }
  return words;
}

capnp::Text::Reader TextOf(const std::string& s) {
  return capnp::Text::Reader(s.data(), s.size());
}

}  // namespace

PendingRecord::PendingRecord() = default;
PendingRecord::PendingRecord(PendingRecord&&) noexcept = default;
PendingRecord& PendingRecord::operator=(PendingRecord&&) noexcept = default;
PendingRecord::~PendingRecord() = default;

absl::StatusOr<PendingRecord> PendingRecord::Encode(const Message& m,
                                                    int64_t born_time_ms,
                                                    size_t max_record_bytes) {
  if (m.body.size() > max_record_bytes) {
    return TooBig("body", m.body.size(), max_record_bytes);
  }
  if (absl::Status s = Validate(m); !s.ok()) return s;
  int64_t deliver_at_ms = 0;
  if (m.deliver_at != absl::InfinitePast()) {
    if (m.deliver_at > absl::FromUnixMillis(born_time_ms) + kMaxDelay) {
      return absl::InvalidArgumentError(
          absl::StrFormat("message deliver_at is more than %d days ahead",
                          kMaxDelay / absl::Hours(24)));
    }
    if (m.deliver_at > absl::FromUnixMillis(born_time_ms)) {
      deliver_at_ms = absl::ToUnixMillis(m.deliver_at);
    }
  }

  PendingRecord record;
  record.builder_ = std::make_unique<capnp::MallocMessageBuilder>(
      EstimateWords(m), capnp::AllocationStrategy::FIXED_SIZE);
  auto root = record.builder_->initRoot<schema::MessageRecord>();
  root.initId(MessageId::kSize);
  root.setTopic(TextOf(m.topic));
  if (!m.key.empty()) root.setKey(TextOf(m.key));
  if (!m.tags.empty()) {
    auto tags = root.initTags(m.tags.size());
    for (size_t i = 0; i < m.tags.size(); ++i) tags.set(i, TextOf(m.tags[i]));
  }
  if (!m.properties.empty()) {
    auto props = root.initProperties(m.properties.size());
    for (size_t i = 0; i < m.properties.size(); ++i) {
      props[i].setName(TextOf(m.properties[i].first));
      props[i].setValue(TextOf(m.properties[i].second));
    }
  }
  root.setBornTimeMs(born_time_ms);
  root.setDeliverAtMs(deliver_at_ms);
  root.setBody(capnp::Data::Reader(
      reinterpret_cast<const kj::byte*>(m.body.data()), m.body.size()));
  record.size_ = capnp::computeSerializedSizeInWords(*record.builder_) * 8;
  if (record.size_ > max_record_bytes) {
    return TooBig("record (body, key, tags and properties)", record.size_,
                  max_record_bytes);
  }
  return record;
}

std::string_view PendingRecord::key() const {
  capnp::Text::Reader key =
      builder_->getRoot<schema::MessageRecord>().asReader().getKey();
  return std::string_view(key.begin(), key.size());
}

int64_t PendingRecord::deliver_at_ms() const {
  return builder_->getRoot<schema::MessageRecord>().getDeliverAtMs();
}

void PendingRecord::Stamp(const MessageId& id, uint32_t queue, uint64_t offset,
                          int64_t store_time_ms) {
  auto root = builder_->getRoot<schema::MessageRecord>();
  std::memcpy(root.getId().begin(), id.bytes().data(), MessageId::kSize);
  root.setQueue(queue);
  root.setOffset(offset);
  root.setStoreTimeMs(store_time_ms);
}

absl::StatusOr<PendingRecord> PendingRecord::FromStored(
    std::string_view record) {
  PendingRecord out;
  absl::StatusOr<bool> read =
      WithStoredRecord(record, [&](schema::MessageRecord::Reader root) {
        out.builder_ = std::make_unique<capnp::MallocMessageBuilder>(
            root.totalSize().wordCount + 16,
            capnp::AllocationStrategy::FIXED_SIZE);
        out.builder_->setRoot(root);
        auto built = out.builder_->getRoot<schema::MessageRecord>();
        if (built.getId().size() != MessageId::kSize) {
          built.initId(MessageId::kSize);
        }
        return true;
      });
  if (!read.ok()) return read.status();
  out.size_ = capnp::computeSerializedSizeInWords(*out.builder_) * 8;
  return out;
}

absl::StatusOr<PendingRecord> PendingRecord::CopyFor(std::string_view record,
                                                     std::string_view topic,
                                                     uint32_t reconsume_times,
                                                     int64_t deliver_at_ms) {
  PendingRecord out;
  absl::StatusOr<bool> read =
      WithStoredRecord(record, [&](schema::MessageRecord::Reader from) {
        // Field by field into one segment, so that nothing replaced is left
        // behind in it.
        out.builder_ = std::make_unique<capnp::MallocMessageBuilder>(
            from.totalSize().wordCount + 2 * Words(topic.size() + 1) +
                Words(from.getTopic().size() + 1) + 32,
            capnp::AllocationStrategy::FIXED_SIZE);
        auto to = out.builder_->initRoot<schema::MessageRecord>();
        to.initId(MessageId::kSize);
        to.setTopic(capnp::Text::Reader(topic.data(), topic.size()));
        if (from.hasKey()) to.setKey(from.getKey());
        if (from.hasTags()) to.setTags(from.getTags());
        if (from.hasProperties()) to.setProperties(from.getProperties());
        to.setBornTimeMs(from.getBornTimeMs());
        to.setBody(from.getBody());
        to.setDeliverAtMs(deliver_at_ms);
        to.setReconsumeTimes(reconsume_times);
        if (from.hasOrigin()) {
          to.setOrigin(from.getOrigin());
        } else {
          auto origin = to.initOrigin();
          origin.setTopic(from.getTopic());
          origin.setId(from.getId());
          origin.setQueue(from.getQueue());
          origin.setOffset(from.getOffset());
          origin.setStoreTimeMs(from.getStoreTimeMs());
        }
        return true;
      });
  if (!read.ok()) return read.status();
  out.size_ = capnp::computeSerializedSizeInWords(*out.builder_) * 8;
  return out;
}

absl::StatusOr<uint32_t> PendingRecord::ReconsumeTimesOf(
    std::string_view record) {
  return WithStoredRecord(record, [](schema::MessageRecord::Reader root) {
    return root.getReconsumeTimes();
  });
}

std::string PendingRecord::Serialize() const {
  std::string out(size_, '\0');
  WriteTo(out.data());
  return out;
}

void PendingRecord::WriteTo(void* out) const {
  kj::ArrayOutputStream stream(
      kj::arrayPtr(static_cast<kj::byte*>(out), size_));
  capnp::writeMessage(stream, *builder_);
}

}  // namespace txmq
