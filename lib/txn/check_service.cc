#include "txn/check_service.h"

#include <cstring>
#include <exception>

#include "absl/strings/str_format.h"
#include "topic/names.h"
#include "txn/txn_store.h"

namespace txmq {
namespace {

constexpr size_t kCheckBatch = 256;

// The answers of one worker batch, applied in one writer request. If the
// batch fails, the answers are lost: their transactions are re-armed in
// memory (their durable timer rows are still there for a restart).
class CheckResultsRequest final : public WriteRequest {
 public:
  struct Answer {
    TransactionId id;
    uint32_t checks;
    TransactionState state;
  };
  CheckResultsRequest(TxnWriter* txns, TimerSink* timers,
                      std::shared_ptr<Clock> clock, CheckPolicy policy,
                      std::vector<Answer> answers,
                      std::shared_ptr<CheckInFlight> in_flight)
      : txns_(txns),
        timers_(timers),
        clock_(std::move(clock)),
        policy_(policy),
        answers_(std::move(answers)),
        in_flight_(std::move(in_flight)) {
    lazy = true;  // a lost answer is asked again
  }

  absl::Status Apply(WriteContext& ctx) override {
    for (const Answer& a : answers_) {
      // ApplyCheckResult turns an answer it cannot apply into a counted
      // unknown, so only a failed batch stops here.
      absl::Status s =
          txns_->ApplyCheckResult(ctx, a.id, a.checks, a.state, policy_);
      if (ctx.failed()) return s;
    }
    return absl::OkStatus();
  }

  size_t weight() const override { return answers_.size(); }

  void Complete(absl::Status status) override {
    if (!status.ok()) {
      const int64_t retry_ms =
          absl::ToUnixMillis(clock_->Now()) +
          absl::ToInt64Milliseconds(policy_.first_interval);
      for (const Answer& a : answers_) {
        timers_->Schedule(kTimerCheckBack, a.id.bytes(), retry_ms);
      }
    }
    for (const Answer& a : answers_) in_flight_->Erase(a.id);
    delete this;
  }

 private:
  TxnWriter* const txns_;
  TimerSink* const timers_;
  const std::shared_ptr<Clock> clock_;
  const CheckPolicy policy_;
  const std::vector<Answer> answers_;
  const std::shared_ptr<CheckInFlight> in_flight_;
};

// A half message read for a check, copied out of the map.
struct ReadHalf {
  TransactionId id;
  TxnState state;
  std::vector<uint64_t> record;  // 8-byte aligned copy
  size_t record_size = 0;
};

// A worker holds no batch, so it may wait for a remap as long as it takes.
void WaitForGate(MapGate& gate) {
  while (!gate.TryEnter()) gate.WaitOpen(absl::Now() + absl::Milliseconds(5));
}

}  // namespace

CheckService::CheckService(Env* env, TxnWriter* txns, Writer* writer,
                           TimerSink* timers, std::shared_ptr<Clock> clock)
    : env_(env),
      txns_(txns),
      writer_(writer),
      timers_(timers),
      clock_(std::move(clock)) {}

CheckService::~CheckService() { Stop(); }

void CheckService::Stop() {
  absl::MutexLock registration(&registration_mu_);
  std::vector<std::unique_ptr<Group>> groups;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [name, group] : groups_) groups.push_back(std::move(group));
    groups_.clear();
  }
  for (auto& group : groups) StopGroup(*group);
}

void CheckService::StopGroup(Group& group) {
  {
    absl::MutexLock lock(&group.mu);
    group.stop = true;
  }
  if (group.worker.joinable()) group.worker.join();
}

absl::Status CheckService::Register(std::string_view group_name,
                                    std::shared_ptr<TransactionChecker> checker,
                                    const CheckPolicy& policy) {
  if (absl::Status s = ValidateName(group_name, NameKind::kGroup); !s.ok()) {
    return s;
  }
  if (checker == nullptr) {
    return absl::InvalidArgumentError("RegisterChecker needs a checker");
  }
  if (policy.max_checks == 0 ||
      policy.transaction_timeout < absl::ZeroDuration() ||
      policy.transaction_timeout > absl::Hours(24 * 365) ||
      policy.first_interval <= absl::ZeroDuration() ||
      policy.max_interval < policy.first_interval ||
      policy.max_interval > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(
        "CheckPolicy needs max_checks >= 1, 0 <= transaction_timeout <= 1 "
        "year and 0 < first_interval <= max_interval <= 1 year");
  }
  const std::string name(group_name);
  absl::MutexLock registration(&registration_mu_);
  std::unique_ptr<Group> old;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the broker is closing");
    auto it = groups_.find(name);
    if (it != groups_.end()) {
      if (it->second->worker.get_id() == std::this_thread::get_id()) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "a checker of group '%s' cannot replace its own registration "
            "from inside Check",
            name));
      }
      old = std::move(it->second);
      groups_.erase(it);
    }
  }
  if (old != nullptr) StopGroup(*old);  // its queue re-fires via Rescan

  auto group = std::make_unique<Group>();
  group->checker = std::move(checker);
  group->policy = policy;
  Group* raw = group.get();
  {
    absl::MutexLock lock(&mu_);
    raw->worker = std::thread([this, raw, name] { RunWorker(raw, name); });
    groups_[name] = std::move(group);
  }
  // Transactions of the group that fell due while it had no checker (or
  // were queued for the replaced one) are checked now.
  timers_->Rescan();
  return absl::OkStatus();
}

absl::Status CheckService::Unregister(std::string_view group_name,
                                      const TransactionChecker* only_if) {
  const std::string name(group_name);
  absl::MutexLock registration(&registration_mu_);
  std::unique_ptr<Group> group;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(name);
    if (it == groups_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "producer group '%s' has no registered checker", name));
    }
    if (it->second->worker.get_id() == std::this_thread::get_id()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "a checker of group '%s' cannot unregister itself from inside "
          "Check",
          name));
    }
    if (only_if != nullptr && it->second->checker.get() != only_if) {
      return absl::OkStatus();  // replaced since: not ours to remove
    }
    group = std::move(it->second);
    groups_.erase(it);
  }
  StopGroup(*group);
  return absl::OkStatus();
}

CheckPolicy CheckService::PolicyFor(std::string_view group) const {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(std::string(group));
  return it == groups_.end() ? CheckPolicy() : it->second->policy;
}

std::vector<TransactionId> CheckService::OnDue(std::vector<TransactionId> ids) {
  MapGate& gate = env_->gate();
  if (!gate.TryEnter()) return ids;
  GatePass pass(&gate);
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) {
    return ids;
  }
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  absl::flat_hash_map<std::string, std::vector<TransactionId>> by_group;
  for (const TransactionId& id : ids) {
    std::string_view value;
    if (GetRow(txn, txns_->tables().half, IdKey(id), &value) != MDB_SUCCESS) {
      continue;  // resolved since the timer was armed
    }
    absl::StatusOr<HalfRow> half = DecodeHalf(value);
    if (!half.ok() || half->state.exhausted) continue;
    const TxnState* state = &half->state;
    if (state->next_check_ms > now_ms) {
      // Not due by the clock (it stepped back, or the timer is stale):
      // arm it for its time. Never drop it: nothing else would.
      timers_->Schedule(kTimerCheckBack, id.bytes(), state->next_check_ms);
      continue;
    }
    by_group[state->group].push_back(id);
  }
  mdb_txn_abort(txn);
  pass.Release();

  absl::MutexLock lock(&mu_);
  for (auto& [name, due] : by_group) {
    auto it = groups_.find(name);
    if (it == groups_.end()) continue;  // no checker: see the class comment
    Group& group = *it->second;
    absl::MutexLock group_lock(&group.mu);
    absl::MutexLock flight_lock(&group.in_flight->mu);
    for (const TransactionId& id : due) {
      if (group.in_flight->ids.contains(id)) continue;  // answer on its way
      if (group.queued.insert(id).second) group.queue.push_back(id);
    }
  }
  return {};
}

void CheckService::RunWorker(Group* group, std::string name) {
  std::vector<TransactionId> batch;
  while (true) {
    {
      absl::MutexLock lock(&group->mu);
      auto ready = [group] {
        group->mu.AssertHeld();
        return group->stop || !group->queue.empty();
      };
      group->mu.Await(absl::Condition(&ready));
      if (group->stop) return;
      absl::MutexLock flight_lock(&group->in_flight->mu);
      while (!group->queue.empty() && batch.size() < kCheckBatch) {
        batch.push_back(group->queue.front());
        group->queued.erase(group->queue.front());
        group->in_flight->ids.insert(group->queue.front());
        group->queue.pop_front();
      }
    }
    CheckBatch(*group, name, batch);
    batch.clear();
  }
}

void CheckService::CheckBatch(Group& group, const std::string& name,
                              std::vector<TransactionId>& batch) {
  // Read and copy out, then let the snapshot go before calling the checker
  // (which may be slow, and may call the broker).
  std::vector<ReadHalf> halves;
  {
    MapGate& gate = env_->gate();
    WaitForGate(gate);
    GatePass pass(&gate);
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) {
      // (Reader slots full.) Try again a little later.
      pass.Release();
      absl::SleepFor(absl::Milliseconds(10));
      absl::MutexLock lock(&group.mu);
      absl::MutexLock flight_lock(&group.in_flight->mu);
      for (const TransactionId& id : batch) {
        group.in_flight->ids.erase(id);
        if (group.queued.insert(id).second) group.queue.push_back(id);
      }
      return;
    }
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    for (const TransactionId& id : batch) {
      std::string_view value;
      if (GetRow(txn, txns_->tables().half, IdKey(id), &value) != MDB_SUCCESS) {
        continue;  // resolved meanwhile
      }
      absl::StatusOr<HalfRow> row = DecodeHalf(value);
      if (!row.ok() || row->state.exhausted || row->state.group != name ||
          row->state.next_check_ms > now_ms) {
        continue;  // moved on (checked already, or not due)
      }
      const std::string_view record = row->record;
      ReadHalf& half = halves.emplace_back();
      half.id = id;
      half.state = std::move(row->state);
      half.record.resize((record.size() + 7) / 8);
      std::memcpy(half.record.data(), record.data(), record.size());
      half.record_size = record.size();
    }
    mdb_txn_abort(txn);
  }

  std::vector<CheckResultsRequest::Answer> answers;
  for (size_t i = 0; i < halves.size(); ++i) {
    {
      // Stopping (Unregister, shutdown): the check in progress is the last.
      absl::MutexLock lock(&group.mu);
      if (group.stop) break;
    }
    const ReadHalf& read = halves[i];
    HalfMessage half;
    half.id = read.id;
    half.group = name;
    half.begin_time = absl::FromUnixMillis(read.state.begin_ms);
    half.checks = read.state.checks;
    absl::StatusOr<MessageView> view = MessageView::FromRecord(std::string_view(
        reinterpret_cast<const char*>(read.record.data()), read.record_size));
    if (view.ok()) half.message = *view;
    TransactionState state = TransactionState::kUnknown;
    try {
      state = group.checker->Check(half);
    } catch (...) {
      state = TransactionState::kUnknown;  // an exception counts as unknown
    }
    checks_.fetch_add(1, std::memory_order_relaxed);
    answers.push_back({read.id, read.state.checks, state});
  }
  // What was not asked (resolved meanwhile, not due, stopping) is not in
  // flight; the answered are until their request completes.
  {
    absl::flat_hash_set<TransactionId> answered;
    for (const auto& a : answers) answered.insert(a.id);
    absl::MutexLock lock(&group.in_flight->mu);
    for (const TransactionId& id : batch) {
      if (!answered.contains(id)) group.in_flight->ids.erase(id);
    }
  }
  if (!answers.empty()) {
    writer_->Submit(new CheckResultsRequest(txns_, timers_, clock_,
                                            group.policy, std::move(answers),
                                            group.in_flight));
  }
}

}  // namespace txmq
