// Dead letters of a consumer group (Broker::ListDeadLetters,
// Broker::RedriveDeadLetters).
//
// A group's dead-letter queue is the topic "%DLQ%<group>" (one queue). What
// was re-driven already is tracked as the committed offset of the internal
// group "%SYS%redrive" on it (the cursor table), written in the same
// transaction as the copies, so a message is re-driven once.

#ifndef TXMQ_LIB_BROKER_DEAD_LETTERS_H_
#define TXMQ_LIB_BROKER_DEAD_LETTERS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/core.h"
#include "txmq/broker.h"

namespace txmq {

// Copies out the dead letter stored at `offset` of a dead-letter queue.
// Errors: DATA_LOSS.
absl::StatusOr<DeadLetter> DecodeDeadLetter(std::string_view stored,
                                            uint64_t offset);

absl::StatusOr<std::vector<DeadLetter>> ListGroupDeadLetters(
    const BrokerCore& core, std::string_view group, size_t limit);

absl::StatusOr<RedriveResult> RedriveGroupDeadLetters(BrokerCore& core,
                                                      std::string_view group,
                                                      size_t max);

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_DEAD_LETTERS_H_
