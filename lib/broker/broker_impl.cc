// BrokerImpl: Broker::Open and the topic administration calls.

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_format.h"
#include "broker/consumer_impl.h"
#include "broker/core.h"
#include "broker/dead_letters.h"
#include "broker/group_admin.h"
#include "broker/producer_impl.h"
#include "broker/push_consumer_impl.h"
#include "broker/transaction_impl.h"
#include "consume/cursor_store.h"
#include "local/local_transaction_impl.h"
#include "retention/retention_policy.h"
#include "storage/lmdb_status.h"
#include "topic/names.h"
#include "txmq/broker.h"
#include "txn/txn_store.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

absl::Status ValidateOptions(const Options& o) {
  if (o.initial_map_bytes < (size_t{1} << 20)) {
    return absl::InvalidArgumentError(
        "Options::initial_map_bytes must be at least 1 MiB");
  }
  if (o.max_map_bytes != 0 && o.max_map_bytes < o.initial_map_bytes) {
    return absl::InvalidArgumentError(
        "Options::max_map_bytes must be 0 (no limit) or at least "
        "initial_map_bytes");
  }
  if (o.max_message_bytes < 256 || o.max_message_bytes > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(
        "Options::max_message_bytes must be between 256 bytes and 1 GiB");
  }
  if (o.max_queues == 0 || o.max_queues > 32768) {
    return absl::InvalidArgumentError(
        "Options::max_queues must be between 1 and 32768");
  }
  if (o.max_tables > 4096) {
    return absl::InvalidArgumentError(
        "Options::max_tables must be between 0 and 4096");
  }
  if (o.max_readers < 8) {
    return absl::InvalidArgumentError(
        "Options::max_readers must be at least 8");
  }
  if (o.outcome_retention < absl::ZeroDuration() ||
      o.outcome_retention > absl::Hours(24 * 3650)) {
    return absl::InvalidArgumentError(
        "Options::outcome_retention must be between 0 and 10 years");
  }
  if (o.retention_check_interval < absl::Milliseconds(1) ||
      o.retention_check_interval > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        "Options::retention_check_interval must be between 1 ms and 1 day");
  }
  if (o.durability == Durability::kAsync &&
      o.async_sync_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "Options::async_sync_interval must be positive");
  }
  return absl::OkStatus();
}

absl::Status NoSuchTopic(std::string_view name) {
  return absl::NotFoundError(absl::StrFormat(
      "topic '%s' does not exist; create it with CreateTopic or 'txmq topic "
      "create'",
      std::string(name)));
}

TopicInfo Describe(const Topic& topic) {
  TopicInfo info;
  info.name = topic.name();
  info.queue_count = topic.queue_count();
  info.create_time = absl::FromUnixMillis(topic.create_time_ms());
  info.retention = RetentionDuration(topic.retention_ms());
  for (uint32_t q = 0; q < topic.queue_count(); ++q) {
    info.queues.push_back(QueueInfo{
        .queue = q,
        .first_offset = topic.queue(q).first.load(std::memory_order_acquire),
        .end_offset = topic.queue(q).end.load(std::memory_order_acquire)});
  }
  return info;
}

uint32_t NewRunId() {
  std::random_device random;
  return random();
}

// Applies fired timers of one kind in a writer request. Lazy: a lost
// write fires again after a restart (the timer rows are still there). If
// the write fails, the timers are re-armed a second later.
class FiredTimers final : public WriteRequest {
 public:
  using ApplyFn = absl::Status (*)(BrokerCore* core, WriteContext& ctx,
                                   const Timer& t);

  // Applies `timers` in requests of at most 4,096, one after the other:
  // each is submitted when the one before it completed. A burst (500,000
  // delayed messages due in the same millisecond) then commits its first
  // deliveries within milliseconds, and sends submitted meanwhile wait
  // for one request, not for the whole burst.
  static void Submit(BrokerCore* core, ApplyFn apply,
                     std::vector<Timer> timers) {
    if (timers.empty()) return;
    auto all = std::make_shared<const std::vector<Timer>>(std::move(timers));
    core->writer->Submit(new FiredTimers(core, apply, std::move(all), 0));
  }

  size_t weight() const override { return end_ - begin_; }
  absl::Status Apply(WriteContext& ctx) override {
    for (size_t i = begin_; i < end_; ++i) {
      if (absl::Status s = apply_(core_, ctx, (*all_)[i]); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  void Complete(absl::Status status) override {
    if (status.ok()) {
      if (end_ < all_->size()) {
        core_->writer->Submit(new FiredTimers(core_, apply_, all_, end_));
      }
    } else {
      // This request and the rest of the chain fire again a second later
      // (durable ones also after a restart).
      const int64_t retry =
          absl::ToUnixMillis(core_->clock->Now() + absl::Seconds(1));
      for (size_t i = begin_; i < all_->size(); ++i) {
        const Timer& t = (*all_)[i];
        core_->timers->Schedule(t.target.kind, t.target.id, retry);
      }
    }
    delete this;
  }

 private:
  static constexpr size_t kPerRequest = 4096;

  FiredTimers(BrokerCore* core, ApplyFn apply,
              std::shared_ptr<const std::vector<Timer>> all, size_t begin)
      : core_(core),
        apply_(apply),
        all_(std::move(all)),
        begin_(begin),
        end_(std::min(all_->size(), begin + kPerRequest)) {
    lazy = true;
  }

  BrokerCore* const core_;
  const ApplyFn apply_;
  const std::shared_ptr<const std::vector<Timer>> all_;
  const size_t begin_;
  const size_t end_;
};

// Forgets an outcome whose retention ran out.
absl::Status ExpireOutcome(BrokerCore* core, WriteContext& ctx,
                           const Timer& t) {
  return core->txns->ApplyExpireOutcome(
      ctx, TransactionId::FromBytes(t.target.id), t.due_ms);
}

// Delivers a delayed message that fell due.
absl::Status DeliverDelayed(BrokerCore* core, WriteContext& ctx,
                            const Timer& t) {
  return core->delays->ApplyDeliver(ctx, t.target.id, t.due_ms);
}

// Timer thread: hands due timers to whoever owns their kind.
std::vector<Timer> DispatchDue(BrokerCore* core, std::vector<Timer> due) {
  std::vector<TransactionId> checks;
  std::vector<Timer> expired;
  std::vector<Timer> deliveries;
  for (const Timer& t : due) {
    if (t.target.kind == kTimerLeaseExpiry) {
      core->redelivery->OnExpiry(t.target);
    } else if (t.target.kind == kTimerCheckBack) {
      checks.push_back(TransactionId::FromBytes(t.target.id));
    } else if (t.target.kind == kTimerOutcomeExpiry) {
      expired.push_back(t);
    } else if (t.target.kind == kTimerDelivery) {
      deliveries.push_back(t);
    } else if (t.target.kind == kTimerRetentionSweep) {
      // Also, on the same beat: free the reader slots of processes that
      // died inside a read transaction (a txmq CLI killed mid-verify), which
      // would otherwise pin pages and count against max_readers until the
      // next open.
      core->env->ClearStaleReaders();
      core->retention->OnDue();
    }
  }
  if (!deliveries.empty()) {
    FiredTimers::Submit(core, DeliverDelayed, std::move(deliveries));
  }
  if (!expired.empty()) {
    FiredTimers::Submit(core, ExpireOutcome, std::move(expired));
  }
  std::vector<Timer> retry;
  for (const TransactionId& id : core->checks->OnDue(std::move(checks))) {
    retry.push_back(Timer{0, TimerTarget{kTimerCheckBack, id.bytes()}});
  }
  return retry;
}

absl::StatusOr<std::vector<HalfMessageInfo>> ListHalfMessages(
    const BrokerCore& core, std::string_view group, size_t limit,
    bool exhausted_only) {
  absl::StatusOr<GatePass> pass = EnterGate(core.env->gate());
  if (!pass.ok()) return pass.status();
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(core.env->env(), nullptr, MDB_RDONLY, &txn);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read pending transactions");
  }
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, core.env->half_table(), &cursor);
  std::vector<HalfMessageInfo> out;
  MDB_val k, v;
  if (rc == MDB_SUCCESS) rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  for (; rc == MDB_SUCCESS && out.size() < limit;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    absl::StatusOr<HalfMessageInfo> info = DecodeHalfInfo(
        std::string_view(static_cast<char*>(k.mv_data), k.mv_size),
        std::string_view(static_cast<char*>(v.mv_data), v.mv_size));
    if (!info.ok()) continue;
    if (!group.empty() && info->group != group) continue;
    if (exhausted_only && !info->exhausted) continue;
    out.push_back(*std::move(info));
  }
  if (cursor != nullptr) mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return LmdbStatus(rc, "cannot read pending transactions");
  }
  return out;
}

class BrokerImpl final : public Broker {
 public:
  explicit BrokerImpl(const Options& options) : core_(options) {}

  ~BrokerImpl() override {
    // The writer finishes what is queued (sends, offset writes), then the
    // callbacks it posted run; only then do the registries and the
    // environment go.
    // No new check-backs, no checks in progress; then the writer finishes
    // what is queued (sends, offsets, check answers) and the callbacks it
    // posted run; only then do the registries and the environment go.
    if (core_.timers != nullptr) core_.timers->Stop();
    if (core_.checks != nullptr) core_.checks->Stop();
    if (core_.writer != nullptr) core_.writer->Stop();
    core_.callbacks.Stop();
  }

  absl::Status Init(std::string_view dir) {
    const Options& o = core_.options;
    Env::Config config;
    config.initial_map_bytes = o.initial_map_bytes;
    config.max_map_bytes = o.max_map_bytes;
    config.max_queue_tables = o.max_queues;
    config.max_host_tables = o.max_tables;
    config.max_readers = o.max_readers;
    config.sync_commits = o.durability == Durability::kSync;
    config.create_if_missing = o.create_if_missing;
    TXMQ_ASSIGN_OR_RETURN(core_.env, Env::Open(dir, config));
    // A quarter of the reader slots at most, for spares.
    core_.read_txns = std::make_shared<ReadTxnCache>(
        core_.env->env(), std::clamp<size_t>(o.max_readers / 4, 1, 16));
    TXMQ_ASSIGN_OR_RETURN(core_.topics, TopicRegistry::Load(core_.env.get()));
    TXMQ_RETURN_IF_ERROR(core_.topics->BuildKeyIndex());
    auto log = [log = o.log](std::string_view message) {
      if (log) log(LogLevel::kInfo, message);
    };
    TopicRegistry* topics = core_.topics.get();
    Writer::ReaderFreeWork close_tables{
        .pending = [topics] { return topics->HasTablesToClose(); },
        .run =
            [topics, log] {
              if (absl::Status s =
                      topics->CloseTables(topics->TakeTablesToClose());
                  !s.ok()) {
                log(std::string_view(s.message().data(), s.message().size()));
              }
            },
    };
    BrokerCore* core = &core_;
    core_.timers = std::make_unique<TimerService>(
        core_.env.get(), core_.env->timer_table(), core_.clock,
        [core](std::vector<Timer> due) {
          return DispatchDue(core, std::move(due));
        });
    const TxnTables tables{.half = core_.env->half_table(),
                           .outcome = core_.env->outcome_table(),
                           .timer = core_.env->timer_table()};
    const uint32_t run = NewRunId();
    core_.delays = std::make_unique<DelayWriter>(
        core_.env->delay_table(), core_.env->timer_table(), core_.topics.get(),
        core_.timers.get(), run);
    core_.txns = std::make_unique<TxnWriter>(
        tables, core_.topics.get(), core_.timers.get(), core_.delays.get(), run,
        o.outcome_retention);
    {
      MDB_txn* txn = nullptr;
      if (int rc = mdb_txn_begin(core_.env->env(), nullptr, MDB_RDONLY, &txn);
          rc != MDB_SUCCESS) {
        return LmdbStatus(rc, "cannot read pending transactions");
      }
      absl::Status loaded = core_.txns->LoadCounts(txn);
      if (loaded.ok()) loaded = core_.delays->LoadCount(txn);
      mdb_txn_abort(txn);
      TXMQ_RETURN_IF_ERROR(loaded);
    }
    core_.writer = std::make_unique<Writer>(core_.env.get(), &core_.signal,
                                            core_.clock, o.async_sync_interval,
                                            log, std::move(close_tables));
    core_.groups =
        std::make_unique<GroupRegistry>(core_.env.get(), core_.writer.get());
    core_.checks = std::make_unique<CheckService>(
        core_.env.get(), core_.txns.get(), core_.writer.get(),
        core_.timers.get(), core_.clock);
    core_.tables = std::make_unique<internal::LocalTables>(core_.writer.get(),
                                                           o.max_tables);
    core_.redelivery = std::make_unique<Redelivery>(
        core_.writer.get(), core_.groups.get(), core_.delays.get(),
        core_.timers.get(), &core_.signal, core_.clock);
    core_.retention = std::make_unique<RetentionSweeper>(
        core_.topics.get(), core_.writer.get(), core_.timers.get(), core_.clock,
        o.retention_check_interval, o.log);
    core_.retention->Start();
    // Recovery: the first load of the timer table re-arms every pending
    // check-back.
    core_.timers->Start();
    return absl::OkStatus();
  }

  absl::StatusOr<GroupLag> DescribeGroup(
      std::string_view group, std::string_view topic) const override {
    return DescribeGroupLag(core_, group, topic);
  }

  absl::StatusOr<std::vector<GroupLag>> ListGroups() const override {
    return ListGroupLags(core_);
  }

  absl::Status ResetGroup(std::string_view group, std::string_view topic_name,
                          const OffsetReset& reset) override {
    TXMQ_RETURN_IF_ERROR(ValidateProgressName(group));
    TXMQ_RETURN_IF_ERROR(ValidateName(topic_name, NameKind::kTopic));
    std::shared_ptr<Topic> topic = core_.topics->Find(topic_name);
    if (topic == nullptr) return NoSuchTopic(topic_name);
    return core_.groups->Reset(group, topic, reset);
  }

  absl::Status RegisterChecker(std::string_view group,
                               std::shared_ptr<TransactionChecker> checker,
                               const CheckPolicy& policy) override {
    return core_.checks->Register(group, std::move(checker), policy);
  }

  absl::Status UnregisterCheckerIf(std::string_view group,
                                   const TransactionChecker* checker) override {
    return core_.checks->Unregister(group, checker);
  }

  absl::Status UnregisterChecker(std::string_view group) override {
    return core_.checks->Unregister(group);
  }

  absl::StatusOr<std::vector<HalfMessageInfo>> ListTransactions(
      std::string_view group, size_t limit,
      bool exhausted_only) const override {
    return ListHalfMessages(core_, group, limit, exhausted_only);
  }

  absl::StatusOr<SendResult> CommitTransaction(
      const TransactionId& id) override {
    return CommitThroughWriter(&core_, id);
  }

  absl::Status RollbackTransaction(const TransactionId& id) override {
    return RollbackThroughWriter(&core_, id);
  }

  absl::Status CreateTopic(std::string_view name,
                           const TopicOptions& options) override {
    TXMQ_RETURN_IF_ERROR(ValidateName(name, NameKind::kTopic));
    TXMQ_ASSIGN_OR_RETURN(const int64_t retention_ms,
                          RetentionMs(options.retention));
    return RunWrite(
        *core_.writer,
        [&](WriteContext& ctx) {
          return core_.topics->ApplyCreate(ctx, name, options.queues,
                                           retention_ms);
        },
        /*exclusive=*/true);
  }

  absl::Status SetTopicRetention(std::string_view name,
                                 absl::Duration retention) override {
    // The broker's own topics (retry and dead-letter queues) may be given
    // a retention too, e.g. to keep dead letters longer.
    if (name.empty() || name[0] != '%' || core_.topics->Find(name) == nullptr) {
      TXMQ_RETURN_IF_ERROR(ValidateName(name, NameKind::kTopic));
    }
    TXMQ_ASSIGN_OR_RETURN(const int64_t retention_ms, RetentionMs(retention));
    return RunWrite(*core_.writer, [&](WriteContext& ctx) -> absl::Status {
      absl::Status s = core_.topics->ApplySetRetention(ctx, name, retention_ms);
      return absl::IsNotFound(s) ? NoSuchTopic(name) : s;
    });
  }

  absl::Status DeleteTopic(std::string_view name) override {
    TXMQ_RETURN_IF_ERROR(ValidateName(name, NameKind::kTopic));
    return RunWrite(
        *core_.writer,
        [&](WriteContext& ctx) -> absl::Status {
          // The topic, and the retry topics of its groups.
          std::vector<std::string> names = {std::string(name)};
          for (const auto& topic : core_.topics->All()) {
            if (IsRetryTopicOf(topic->name(), name)) {
              names.push_back(topic->name());
            }
          }
          for (const std::string& doomed : names) {
            TXMQ_RETURN_IF_ERROR(core_.topics->ApplyDelete(
                ctx, doomed, [groups = core_.groups.get()](const Topic& topic) {
                  groups->ForgetTopic(topic);
                }));
            if (int rc = DeleteTopicCursors(ctx.txn(),
                                            core_.env->cursor_table(), doomed);
                rc != MDB_SUCCESS) {
              return ctx.Fail(rc, "cannot delete the topic's consumer offsets");
            }
          }
          return absl::OkStatus();
        },
        /*exclusive=*/true);
  }

  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      std::string_view group, size_t limit) const override {
    return ListGroupDeadLetters(core_, group, limit);
  }

  absl::StatusOr<RedriveResult> RedriveDeadLetters(std::string_view group,
                                                   size_t max) override {
    return RedriveGroupDeadLetters(core_, group, max);
  }

  std::vector<TopicInfo> ListTopics() const override {
    std::vector<TopicInfo> out;
    for (const auto& topic : core_.topics->All())
      out.push_back(Describe(*topic));
    return out;
  }

  absl::StatusOr<TopicInfo> DescribeTopic(
      std::string_view name) const override {
    std::shared_ptr<Topic> topic = core_.topics->Find(name);
    if (topic == nullptr) return NoSuchTopic(name);
    return Describe(*topic);
  }

  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const ProducerOptions& options) override {
    if (!options.group.empty()) {
      TXMQ_RETURN_IF_ERROR(ValidateName(options.group, NameKind::kGroup));
    }
    return std::unique_ptr<Producer>(new LocalProducer(&core_, options));
  }

  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(
      std::string_view group, std::string_view topic_name,
      const ConsumerOptions& options) override {
    TXMQ_RETURN_IF_ERROR(ValidateName(group, NameKind::kGroup));
    std::shared_ptr<Topic> topic = core_.topics->Find(topic_name);
    if (topic == nullptr) return NoSuchTopic(topic_name);
    LocalConsumer::Params params{
        .group = std::string(group),
        .invisible_duration = options.invisible_duration,
        .ordered = options.ordered};
    TXMQ_ASSIGN_OR_RETURN(params.filter, TagFilter::Parse(options.tag_filter));
    if (options.invisible_duration < absl::Milliseconds(1)) {
      return absl::InvalidArgumentError(
          "ConsumerOptions::invisible_duration must be at least 1 ms");
    }
    for (absl::Duration d : options.retry.backoff) {
      if (d < absl::ZeroDuration() || d > kMaxDelay) {
        return absl::InvalidArgumentError(
            "RetryPolicy::backoff entries must be between 0 and 366 days");
      }
    }
    // Where its progress lives: the group, or a broadcasting instance.
    std::string progress(group);
    if (options.model == MessageModel::kBroadcasting) {
      std::string instance = options.instance;
      if (instance.empty()) {
        std::tie(instance, params.on_close) =
            TakeInstanceNumber(group, topic_name);
      } else {
        TXMQ_RETURN_IF_ERROR(ValidateName(instance, NameKind::kGroup));
      }
      progress = std::string(group) + "%" + instance;
    } else if (!options.instance.empty()) {
      return absl::InvalidArgumentError(
          "ConsumerOptions::instance is for broadcasting consumers only");
    }
    // The group's retry queue for the topic and its dead-letter queue.
    TXMQ_ASSIGN_OR_RETURN(
        std::shared_ptr<Topic> retry,
        EnsureOwnTopic(RetryTopicName(progress, topic_name), topic));
    TXMQ_ASSIGN_OR_RETURN(
        std::shared_ptr<Topic> dead_letter,
        EnsureOwnTopic(DeadLetterTopicName(progress), nullptr));
    TXMQ_ASSIGN_OR_RETURN(
        params.state, core_.groups->Get(progress, topic, options.start_from));
    TXMQ_ASSIGN_OR_RETURN(
        params.retry, core_.groups->Get(progress, retry, StartFrom::kEarliest));
    const RedeliveryTargets targets{.retry = retry,
                                    .dead_letter = dead_letter,
                                    .policy = options.retry,
                                    .ordered = options.ordered};
    params.state->SetTargets(targets);
    params.retry->SetTargets(targets);
    return std::unique_ptr<Consumer>(
        new LocalConsumer(&core_, std::move(params)));
  }

  absl::StatusOr<std::unique_ptr<PushConsumer>> CreatePushConsumer(
      std::string_view group, std::string_view topic, MessageListener listener,
      const PushConsumerOptions& options) override {
    return LocalPushConsumer::Create(*this, group, topic, std::move(listener),
                                     options);
  }

  absl::StatusOr<LocalTable> OpenTable(std::string_view name) override {
    return core_.tables->Open(name);
  }

  absl::Status RunInTransaction(
      const std::function<absl::Status(LocalTransaction&)>& fn) override {
    return RunLocalTransaction(core_, fn);
  }

  absl::Status ReadTables(const std::function<absl::Status(const LocalReader&)>&
                              fn) const override {
    return ReadLocalTables(core_, fn);
  }

  absl::Status Sync() override {
    return RunWrite(
        *core_.writer, [](WriteContext&) { return absl::OkStatus(); },
        /*exclusive=*/false, /*needs_sync=*/true);
  }

  BrokerStats Stats() const override {
    BrokerStats stats;
    stats.map_bytes = core_.env->map_bytes();
    stats.used_bytes = core_.env->used_bytes();
    stats.commits = core_.writer->commits();
    stats.map_growths = core_.writer->map_growths();
    stats.zero_copy_reads =
        core_.zero_copy_reads.load(std::memory_order_relaxed);
    stats.copied_reads = core_.copied_reads.load(std::memory_order_relaxed);
    stats.pending_transactions = core_.txns->pending();
    stats.exhausted_transactions = core_.txns->exhausted();
    stats.checks = core_.checks->checks();
    stats.delayed_messages = core_.delays->pending();
    stats.redeliveries = core_.redelivery->redeliveries();
    stats.dead_lettered = core_.redelivery->dead_lettered();
    stats.expired_messages = core_.retention->expired();
    stats.stale_readers_cleared = core_.env->stale_readers_cleared();
    return stats;
  }

  const std::string& dir() const override { return core_.env->dir(); }

 private:
  // The lowest broadcasting instance number of (group, topic) that no live
  // consumer uses, and what gives it back.
  std::pair<std::string, std::function<void()>> TakeInstanceNumber(
      std::string_view group, std::string_view topic) {
    std::string key = std::string(group) + '\0' + std::string(topic);
    uint32_t number = 0;
    {
      absl::MutexLock lock(&core_.instances_mu);
      std::set<uint32_t>& used = core_.instances[key];
      while (used.contains(number)) ++number;
      used.insert(number);
    }
    BrokerCore* core = &core_;
    return {std::to_string(number), [core, key, number] {
              absl::MutexLock lock(&core->instances_mu);
              core->instances[key].erase(number);
            }};
  }

  // The broker's own topic `name` (one queue), created if missing; for
  // topic `of` (when given), which must not be deleted meanwhile
  // (NOT_FOUND).
  absl::StatusOr<std::shared_ptr<Topic>> EnsureOwnTopic(
      const std::string& name, const std::shared_ptr<Topic>& of) {
    if (std::shared_ptr<Topic> topic = core_.topics->Find(name)) return topic;
    absl::Status s = RunWrite(
        *core_.writer,
        [&](WriteContext& ctx) -> absl::Status {
          // Checked in the writer: a deletion of `of` that committed
          // before is visible here, and one after it deletes this too.
          if (of != nullptr && of->deleted()) {
            return absl::NotFoundError(
                absl::StrFormat("topic '%s' was deleted", of->name()));
          }
          // The broker's own topics keep the default retention.
          return core_.topics->ApplyCreate(
              ctx, name, 1, absl::ToInt64Milliseconds(kDefaultRetention));
        },
        /*exclusive=*/true);
    if (absl::IsNotFound(s)) return s;
    if (!s.ok() && !absl::IsAlreadyExists(s)) {
      return absl::Status(
          s.code(),
          absl::StrFormat("cannot create '%s', which a consumer group needs "
                          "for its retries and dead letters: %s",
                          name, std::string(s.message())));
    }
    std::shared_ptr<Topic> topic = core_.topics->Find(name);
    if (topic == nullptr) {  // deleted with `of` right after
      return absl::NotFoundError(absl::StrFormat(
          "topic '%s' was deleted", of != nullptr ? of->name() : name));
    }
    return topic;
  }

  BrokerCore core_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Broker>> Broker::Open(std::string_view dir,
                                                     const Options& options) {
  TXMQ_RETURN_IF_ERROR(ValidateOptions(options));
  auto broker = std::make_unique<BrokerImpl>(options);
  TXMQ_RETURN_IF_ERROR(broker->Init(dir));
  return std::unique_ptr<Broker>(std::move(broker));
}

}  // namespace txmq
