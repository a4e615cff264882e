// BrokerCore: the parts of a broker that its producers and consumers share.
// Owned by BrokerImpl; producers and consumers hold a pointer to it and must
// be destroyed before it (the public API states that rule).
//
// Construction order is destruction order reversed: the writer and the
// callback thread stop before the registries and the environment go.

#ifndef TXMQ_LIB_BROKER_CORE_H_
#define TXMQ_LIB_BROKER_CORE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "broker/callback_runner.h"
#include "consume/group_registry.h"
#include "storage/env.h"
#include "topic/topic_registry.h"
#include "txmq/broker.h"
#include "write/commit_signal.h"
#include "write/writer.h"

namespace txmq {

struct BrokerCore {
  explicit BrokerCore(const Options& o) : options(o) {}

  const Options options;
  std::unique_ptr<Env> env;
  std::unique_ptr<TopicRegistry> topics;
  CommitSignal signal;
  std::unique_ptr<Writer> writer;
  std::unique_ptr<GroupRegistry> groups;
  CallbackRunner callbacks;

  std::atomic<uint64_t> zero_copy_reads{0};
  std::atomic<uint64_t> copied_reads{0};
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_CORE_H_
