#include "rpc/convert.h"

#include <cstring>
#include <string>

#include "absl/strings/str_format.h"

namespace txmq::rpc {
namespace {

std::string Str(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

kj::StringPtr Text(const std::string& s) {
  return kj::StringPtr(s.c_str(), s.size());
}

}  // namespace

void ToWire(const absl::Status& status, Status::Builder out) {
  out.setCode(static_cast<uint32_t>(status.code()));
  const std::string message(status.message());
  out.setMessage(Text(message));
}

absl::Status FromWire(Status::Reader status) {
  if (status.getCode() == 0) return absl::OkStatus();
  const uint32_t code = status.getCode();
  return absl::Status(code <= 16 ? static_cast<absl::StatusCode>(code)
                                 : absl::StatusCode::kUnknown,
                      Str(status.getMessage()));
}

absl::Status FromException(const kj::Exception& e) {
  if (e.getType() == kj::Exception::Type::UNIMPLEMENTED) {
    return absl::UnimplementedError(absl::StrFormat(
        "the txmq server does not know this call (an older server?): %s",
        e.getDescription().cStr()));
  }
  return absl::UnavailableError(absl::StrFormat(
      "no answer from the txmq server (the connection broke or the server "
      "stopped): %s",
      e.getDescription().cStr()));
}

void ToWire(const txmq::Message& m, Message::Builder out) {
  out.setTopic(Text(m.topic));
  out.setKey(Text(m.key));
  auto tags = out.initTags(m.tags.size());
  for (size_t i = 0; i < m.tags.size(); ++i) tags.set(i, Text(m.tags[i]));
  auto props = out.initProperties(m.properties.size());
  for (size_t i = 0; i < m.properties.size(); ++i) {
    props[i].setName(Text(m.properties[i].first));
    props[i].setValue(Text(m.properties[i].second));
  }
  out.setBody(capnp::Data::Reader(
      reinterpret_cast<const kj::byte*>(m.body.data()), m.body.size()));
  out.setDeliverAtMs(m.deliver_at == absl::InfinitePast()
                         ? 0
                         : absl::ToUnixMillis(m.deliver_at));
}

absl::Status CheckWireMessage(Message::Reader m) {
  if (m.getTags().size() > 32) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a message has at most 32 tags, not %d", m.getTags().size()));
  }
  if (m.getProperties().size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a message has at most 256 properties, not %d",
                        m.getProperties().size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<txmq::Message> DecodeWire(Message::Reader m) {
  if (absl::Status s = CheckWireMessage(m); !s.ok()) return s;
  return FromWire(m);
}

txmq::Message FromWire(Message::Reader m) {
  txmq::Message out{.topic = Str(m.getTopic()), .key = Str(m.getKey())};
  for (auto tag : m.getTags()) out.tags.push_back(Str(tag));
  for (auto p : m.getProperties()) {
    out.properties.emplace_back(Str(p.getName()), Str(p.getValue()));
  }
  const capnp::Data::Reader body = m.getBody();
  out.body.assign(reinterpret_cast<const char*>(body.begin()), body.size());
  if (m.getDeliverAtMs() != 0) {
    out.deliver_at = absl::FromUnixMillis(m.getDeliverAtMs());
  }
  return out;
}

void ToWire(const txmq::SendResult& r, SendResult::Builder out) {
  if (!r.delayed()) {
    out.setId(capnp::Data::Reader(r.id.bytes().data(), MessageId::kSize));
  }
  out.setQueue(r.queue);
  out.setOffset(r.offset);
  out.setStoreTimeMs(absl::ToUnixMillis(r.store_time));
  out.setDeliverAtMs(absl::ToUnixMillis(r.deliver_at));
}

txmq::SendResult FromWire(SendResult::Reader r) {
  txmq::SendResult out;
  const capnp::Data::Reader id = r.getId();
  if (id.size() == MessageId::kSize) {
    std::array<uint8_t, MessageId::kSize> bytes;
    std::memcpy(bytes.data(), id.begin(), bytes.size());
    out.id = MessageId::FromBytes(bytes);
  }
  out.queue = r.getQueue();
  out.offset = r.getOffset();
  out.store_time = absl::FromUnixMillis(r.getStoreTimeMs());
  out.deliver_at = absl::FromUnixMillis(r.getDeliverAtMs());
  return out;
}

void ToWire(const txmq::TopicInfo& info, TopicInfo::Builder out) {
  out.setName(Text(info.name));
  out.setQueueCount(info.queue_count);
  out.setCreateTimeMs(absl::ToUnixMillis(info.create_time));
  out.setRetentionMs(info.retention == absl::InfiniteDuration()
                         ? -1
                         : absl::ToInt64Milliseconds(info.retention));
  auto queues = out.initQueues(info.queues.size());
  for (size_t i = 0; i < info.queues.size(); ++i) {
    queues[i].setQueue(info.queues[i].queue);
    queues[i].setFirstOffset(info.queues[i].first_offset);
    queues[i].setEndOffset(info.queues[i].end_offset);
  }
}

txmq::TopicInfo FromWire(TopicInfo::Reader info) {
  txmq::TopicInfo out{
      .name = Str(info.getName()),
      .queue_count = info.getQueueCount(),
      .create_time = absl::FromUnixMillis(info.getCreateTimeMs()),
      .retention = info.getRetentionMs() < 0
                       ? absl::InfiniteDuration()
                       : absl::Milliseconds(info.getRetentionMs())};
  for (auto q : info.getQueues()) {
    out.queues.push_back(txmq::QueueInfo{.queue = q.getQueue(),
                                         .first_offset = q.getFirstOffset(),
                                         .end_offset = q.getEndOffset()});
  }
  return out;
}

void ToWire(const txmq::CheckPolicy& policy, CheckPolicy::Builder out) {
  out.setTransactionTimeoutMs(
      absl::ToInt64Milliseconds(policy.transaction_timeout));
  out.setMaxChecks(policy.max_checks);
  out.setFirstIntervalMs(absl::ToInt64Milliseconds(policy.first_interval));
  out.setMaxIntervalMs(absl::ToInt64Milliseconds(policy.max_interval));
}

txmq::CheckPolicy FromWire(CheckPolicy::Reader policy) {
  txmq::CheckPolicy out;
  out.transaction_timeout =
      absl::Milliseconds(policy.getTransactionTimeoutMs());
  out.max_checks = policy.getMaxChecks();
  out.first_interval = absl::Milliseconds(policy.getFirstIntervalMs());
  out.max_interval = absl::Milliseconds(policy.getMaxIntervalMs());
  return out;
}

void ToWire(const txmq::ConsumerOptions& o, ConsumerOptions::Builder out) {
  out.setStartFrom(o.start_from == StartFrom::kLatest ? 1 : 0);
  out.setTagFilter(Text(o.tag_filter));
  out.setInvisibleDurationMs(absl::ToInt64Milliseconds(o.invisible_duration));
  auto retry = out.initRetry();
  retry.setMaxReconsumeTimes(o.retry.max_reconsume_times);
  auto backoff = retry.initBackoffMs(o.retry.backoff.size());
  for (size_t i = 0; i < o.retry.backoff.size(); ++i) {
    backoff.set(i, absl::ToInt64Milliseconds(o.retry.backoff[i]));
  }
  out.setOrdered(o.ordered);
  out.setBroadcasting(o.model == MessageModel::kBroadcasting);
  out.setInstance(Text(o.instance));
}

txmq::ConsumerOptions FromWire(ConsumerOptions::Reader o) {
  txmq::ConsumerOptions out;
  out.start_from =
      o.getStartFrom() == 1 ? StartFrom::kLatest : StartFrom::kEarliest;
  out.tag_filter = Str(o.getTagFilter());
  out.invisible_duration = absl::Milliseconds(o.getInvisibleDurationMs());
  out.retry.max_reconsume_times = o.getRetry().getMaxReconsumeTimes();
  out.retry.backoff.clear();
  for (int64_t ms : o.getRetry().getBackoffMs()) {
    out.retry.backoff.push_back(absl::Milliseconds(ms));
  }
  out.ordered = o.getOrdered();
  out.model = o.getBroadcasting() ? MessageModel::kBroadcasting
                                  : MessageModel::kClustering;
  out.instance = Str(o.getInstance());
  return out;
}

uint8_t ToWire(QueueSelector selector) {
  switch (selector) {
    case QueueSelector::kAuto:
      return 0;
    case QueueSelector::kKeyHash:
      return 1;
    case QueueSelector::kRoundRobin:
      return 2;
  }
  return 0;
}

absl::StatusOr<QueueSelector> SelectorFromWire(uint8_t selector) {
  switch (selector) {
    case 0:
      return QueueSelector::kAuto;
    case 1:
      return QueueSelector::kKeyHash;
    case 2:
      return QueueSelector::kRoundRobin;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("unknown queue selector %d", selector));
}

}  // namespace txmq::rpc
