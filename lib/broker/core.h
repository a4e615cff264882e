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
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "broker/callback_runner.h"
#include "consume/group_registry.h"
#include "delay/delay_writer.h"
#include "local/local_tables.h"
#include "retention/retention_sweeper.h"
#include "retry/redelivery.h"
#include "storage/env.h"
#include "storage/read_txn_cache.h"
#include "timer/timer_service.h"
#include "topic/topic_registry.h"
#include "txmq/broker.h"
#include "txn/check_service.h"
#include "txn/txn_writer.h"
#include "write/commit_signal.h"
#include "write/writer.h"

namespace txmq {

struct BrokerCore {
  explicit BrokerCore(const Options& o)
      : options(o), clock(o.clock != nullptr ? o.clock : SystemClock()) {}

  const Options options;
  const std::shared_ptr<Clock> clock;
  std::unique_ptr<Env> env;
  // Spare read transactions of every consumer (storage/read_txn_cache.h);
  // batches share ownership, and are released before the broker closes.
  std::shared_ptr<ReadTxnCache> read_txns;
  std::unique_ptr<TopicRegistry> topics;
  CommitSignal signal;
  // The timer service is built before the writer (which reports timer
  // changes to it) and started after recovery; BrokerImpl's destructor
  // stops the threads in the safe order before any of these go.
  std::unique_ptr<TimerService> timers;
  std::unique_ptr<DelayWriter> delays;
  std::unique_ptr<TxnWriter> txns;
  std::unique_ptr<Writer> writer;
  std::unique_ptr<GroupRegistry> groups;
  std::unique_ptr<CheckService> checks;
  std::unique_ptr<Redelivery> redelivery;
  std::unique_ptr<internal::LocalTables> tables;
  // Round-robin queue choice of LocalTransaction::Send.
  std::atomic<uint32_t> local_round_robin{0};
  // Driven by the timer thread; its requests run on the writer.
  std::unique_ptr<RetentionSweeper> retention;
  CallbackRunner callbacks;

  // Consumer ids (the owners of leases); 0 is the broker's own.
  std::atomic<uint64_t> next_consumer_id{1};

  // Broadcasting instance numbers in use by live consumers, per
  // group '\0' topic (ConsumerOptions::instance).
  absl::Mutex instances_mu;
  absl::flat_hash_map<std::string, std::set<uint32_t>> instances
      ABSL_GUARDED_BY(instances_mu);

  std::atomic<uint64_t> zero_copy_reads{0};
  std::atomic<uint64_t> copied_reads{0};
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_CORE_H_
