#include "txn/check_service.h"

#include <cstring>
#include <exception>

#include "absl/strings/str_format.h"
#include "storage/read_txn_cache.h"
#include "topic/names.h"
#include "txn/txn_store.h"
#include "util/strings.h"

namespace txmq {
namespace {

constexpr size_t kCheckBatch = 256;

// The answers of one worker batch, applied in one writer request.
class CheckResultsRequest final : public WriteRequest {
 public:
  struct Answer {
    TransactionId id;
    uint32_t checks;
    TransactionState state;
  };
  CheckResultsRequest(TxnWriter* txns, CheckPolicy policy,
                      std::vector<Answer> answers)
      : txns_(txns), policy_(policy), answers_(std::move(answers)) {}

  absl::Status Apply(WriteContext& ctx) override {
    for (const Answer& a : answers_) {
      // One answer that cannot apply (a deleted topic) must not hold up the
      // others; it wrote nothing, and the transaction stays pending.
      (void)txns_->ApplyCheckResult(ctx, a.id, a.checks, a.state, policy_);
      if (ctx.failed()) return ctx.status();
    }
    return absl::OkStatus();
  }
  void Complete(absl::Status) override { delete this; }

 private:
  TxnWriter* const txns_;
  const CheckPolicy policy_;
  const std::vector<Answer> answers_;
};

// A half message read for a check, copied out of the map.
struct ReadHalf {
  TransactionId id;
  TxnState state;
  std::vector<uint64_t> record;  // 8-byte aligned copy
  size_t record_size = 0;
};

}  // namespace

CheckService::CheckService(Env* env, TxnWriter* txns, Writer* writer,
                           std::shared_ptr<Clock> clock)
    : env_(env), txns_(txns), writer_(writer), clock_(std::move(clock)) {}

CheckService::~CheckService() { Stop(); }

void CheckService::Stop() {
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

std::vector<TransactionId> CheckService::StopGroup(Group& group) {
  {
    absl::MutexLock lock(&group.mu);
    group.stop = true;
  }
  if (group.worker.joinable()) group.worker.join();
  absl::MutexLock lock(&group.mu);
  return std::vector<TransactionId>(group.queue.begin(), group.queue.end());
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
      policy.first_interval <= absl::ZeroDuration() ||
      policy.max_interval < policy.first_interval) {
    return absl::InvalidArgumentError(
        "CheckPolicy needs max_checks >= 1, a transaction_timeout >= 0 and "
        "0 < first_interval <= max_interval");
  }
  const std::string name(group_name);
  // Replace an existing registration: stop its worker first (outside mu_;
  // the worker never takes mu_).
  std::unique_ptr<Group> old;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the broker is closing");
    auto it = groups_.find(name);
    if (it != groups_.end()) {
      old = std::move(it->second);
      groups_.erase(it);
    }
  }
  std::vector<TransactionId> carried;
  if (old != nullptr) carried = StopGroup(*old);

  auto group = std::make_unique<Group>();
  group->checker = std::move(checker);
  group->policy = policy;
  Group* raw = group.get();
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::UnavailableError("the broker is closing");
  auto waiting = waiting_.find(name);
  if (waiting != waiting_.end()) {
    carried.insert(carried.end(), waiting->second.begin(),
                   waiting->second.end());
    waiting_.erase(waiting);
  }
  {
    absl::MutexLock group_lock(&raw->mu);
    raw->queue.assign(carried.begin(), carried.end());
  }
  raw->worker = std::thread([this, raw, name] { RunWorker(raw, name); });
  groups_[name] = std::move(group);
  return absl::OkStatus();
}

absl::Status CheckService::Unregister(std::string_view group_name) {
  std::unique_ptr<Group> group;
  const std::string name(group_name);
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(name);
    if (it == groups_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "producer group '%s' has no registered checker", name));
    }
    group = std::move(it->second);
    groups_.erase(it);
  }
  std::vector<TransactionId> left = StopGroup(*group);
  absl::MutexLock lock(&mu_);
  auto& waiting = waiting_[name];
  waiting.insert(waiting.end(), left.begin(), left.end());
  return absl::OkStatus();
}

CheckPolicy CheckService::PolicyFor(std::string_view group) const {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(std::string(group));
  return it == groups_.end() ? CheckPolicy() : it->second->policy;
}

size_t CheckService::waiting() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [name, ids] : waiting_) n += ids.size();
  return n;
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
  // group -> due ids
  absl::flat_hash_map<std::string, std::vector<TransactionId>> by_group;
  for (const TransactionId& id : ids) {
    std::string_view value;
    if (GetRow(txn, txns_->tables().state, IdKey(id), &value) != MDB_SUCCESS) {
      continue;  // resolved since the timer was armed
    }
    absl::StatusOr<TxnState> state = DecodeTxnState(value);
    if (!state.ok() || state->exhausted || state->next_check_ms > now_ms) {
      continue;  // rescheduled: a later timer covers it
    }
    by_group[state->group].push_back(id);
  }
  mdb_txn_abort(txn);
  pass.Release();

  absl::MutexLock lock(&mu_);
  for (auto& [name, due] : by_group) {
    auto it = groups_.find(name);
    if (it == groups_.end()) {
      auto& waiting = waiting_[name];
      waiting.insert(waiting.end(), due.begin(), due.end());
      continue;
    }
    Group& group = *it->second;
    absl::MutexLock group_lock(&group.mu);
    group.queue.insert(group.queue.end(), due.begin(), due.end());
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
      while (!group->queue.empty() && batch.size() < kCheckBatch) {
        batch.push_back(group->queue.front());
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
  MapGate& gate = env_->gate();
  while (!gate.TryEnter()) gate.WaitOpen(absl::Now() + absl::Milliseconds(5));
  {
    GatePass pass(&gate);
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) {
      // Put them back; the next round tries again.
      absl::MutexLock lock(&group.mu);
      group.queue.insert(group.queue.end(), batch.begin(), batch.end());
      return;
    }
    for (const TransactionId& id : batch) {
      std::string_view state_value, record;
      if (GetRow(txn, txns_->tables().state, IdKey(id), &state_value) !=
              MDB_SUCCESS ||
          GetRow(txn, txns_->tables().half, IdKey(id), &record) !=
              MDB_SUCCESS) {
        continue;  // resolved meanwhile
      }
      absl::StatusOr<TxnState> state = DecodeTxnState(state_value);
      if (!state.ok() || state->exhausted || state->group != name) continue;
      ReadHalf& half = halves.emplace_back();
      half.id = id;
      half.state = *std::move(state);
      half.record.resize((record.size() + 7) / 8);
      std::memcpy(half.record.data(), record.data(), record.size());
      half.record_size = record.size();
    }
    mdb_txn_abort(txn);
  }

  std::vector<CheckResultsRequest::Answer> answers;
  for (ReadHalf& read : halves) {
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
  if (!answers.empty()) {
    writer_->Submit(
        new CheckResultsRequest(txns_, group.policy, std::move(answers)));
  }
}

}  // namespace txmq
