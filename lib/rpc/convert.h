// Conversions between the public API's types and the RPC schema's
// (lib/schema/rpc.capnp), used by both the server and the client.

#ifndef TXMQ_LIB_RPC_CONVERT_H_
#define TXMQ_LIB_RPC_CONVERT_H_

#include <kj/exception.h>

#include "absl/status/status.h"
#include "rpc.capnp.h"
#include "txmq/broker.h"
#include "txmq/consumer.h"
#include "txmq/message.h"
#include "txmq/producer.h"
#include "txmq/transaction.h"

namespace txmq::rpc {

void ToWire(const absl::Status& status, Status::Builder out);
absl::Status FromWire(Status::Reader status);
// A call that got no answer: the connection broke or the server stopped.
absl::Status FromException(const kj::Exception& e);

void ToWire(const txmq::Message& message, Message::Builder out);
// Checks the list sizes of a received message against the broker's limits
// (include/txmq/message.h) before it is converted: a list of empty
// elements costs a client one word each on the wire, not what converting
// it would cost here. Errors: INVALID_ARGUMENT.
absl::Status CheckWireMessage(Message::Reader message);
txmq::Message FromWire(Message::Reader message);
// CheckWireMessage, then FromWire (which throws on a malformed message).
absl::StatusOr<txmq::Message> DecodeWire(Message::Reader message);

// The most messages one sendBatch carries.
inline constexpr size_t kMaxWireBatch = 10000;

void ToWire(const txmq::SendResult& result, SendResult::Builder out);
txmq::SendResult FromWire(SendResult::Reader result);

void ToWire(const txmq::TopicInfo& info, TopicInfo::Builder out);
txmq::TopicInfo FromWire(TopicInfo::Reader info);

void ToWire(const txmq::CheckPolicy& policy, CheckPolicy::Builder out);
txmq::CheckPolicy FromWire(CheckPolicy::Reader policy);

void ToWire(const txmq::ConsumerOptions& options, ConsumerOptions::Builder out);
txmq::ConsumerOptions FromWire(ConsumerOptions::Reader options);

uint8_t ToWire(QueueSelector selector);
// Errors: INVALID_ARGUMENT for an unknown value.
absl::StatusOr<QueueSelector> SelectorFromWire(uint8_t selector);

}  // namespace txmq::rpc

#endif  // TXMQ_LIB_RPC_CONVERT_H_
