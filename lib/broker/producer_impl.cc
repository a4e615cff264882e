#include "broker/producer_impl.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_format.h"
#include "broker/transaction_impl.h"
#include "log/append.h"
#include "log/record_codec.h"
#include "storage/keys.h"

namespace txmq {

uint32_t QueueForKey(std::string_view key, uint32_t queue_count) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return static_cast<uint32_t>(hash % queue_count);
}

namespace {

// One or more messages appended in one transaction. Subclasses decide how
// the outcome is delivered.
class SendRequest : public WriteRequest {
 public:
  explicit SendRequest(DelayWriter* delays) : delays_(delays) {}

  struct Item {
    std::shared_ptr<Topic> topic;
    uint32_t queue;
    PendingRecord record;
  };

  absl::Status Apply(WriteContext& ctx) override {
    results_.clear();
    for (const Item& item : items_) {
      if (item.topic->deleted()) {
        return absl::NotFoundError(
            absl::StrFormat("topic '%s' was deleted", item.topic->name()));
      }
    }
    for (Item& item : items_) {
      absl::StatusOr<SendResult> sent =
          delays_->Store(ctx, *item.topic, item.queue, item.record);
      if (!sent.ok()) return sent.status();
      results_.push_back(*sent);
    }
    return absl::OkStatus();
  }

  size_t weight() const override { return items_.size(); }

  DelayWriter* const delays_;
  absl::InlinedVector<Item, 1> items_;
  std::vector<SendResult> results_;
};

class BlockingSend final : public SendRequest {
 public:
  explicit BlockingSend(DelayWriter* delays) : SendRequest(delays) {}
  void Complete(absl::Status status) override {
    outcome_.Set(std::move(status));
  }
  absl::Status Wait() { return outcome_.Wait(); }

 private:
  Outcome outcome_;
};

// Messages sent each on its own (one outcome per message) in one request,
// so that they cost one queue entry and one completion: the RPC server's
// sendEach. The outcome is delivered on the writer thread.
class EachSend final : public WriteRequest {
 public:
  using Item = SendRequest::Item;
  EachSend(DelayWriter* delays, size_t n, LocalProducer::EachCallback done)
      : delays_(delays), items_(n), results_(n), done_(std::move(done)) {}

  absl::Status Apply(WriteContext& ctx) override {
    for (size_t i = 0; i < items_.size(); ++i) {
      if (!items_[i].has_value()) continue;  // refused before it was queued
      Item& item = *items_[i];
      // Store refuses a deleted topic before it writes; any other failure
      // is the batch's (ctx.failed()).
      results_[i] = delays_->Store(ctx, *item.topic, item.queue, item.record);
      if (ctx.failed()) return ctx.status();
    }
    return absl::OkStatus();
  }

  void Complete(absl::Status status) override {
    if (!status.ok()) {
      for (size_t i = 0; i < items_.size(); ++i) {
        if (items_[i].has_value()) results_[i] = status;
      }
    }
    done_(std::move(results_));
    delete this;
  }

  size_t weight() const override { return std::max<size_t>(1, queued_); }

  DelayWriter* const delays_;
  std::vector<std::optional<Item>> items_;
  std::vector<absl::StatusOr<SendResult>> results_;
  size_t queued_ = 0;

 private:
  LocalProducer::EachCallback done_;
};

class CallbackSend final : public SendRequest {
 public:
  CallbackSend(DelayWriter* delays, CallbackRunner* runner,
               Producer::SendCallback done)
      : SendRequest(delays), runner_(runner), done_(std::move(done)) {}
  void Complete(absl::Status status) override {
    absl::StatusOr<SendResult> result =
        status.ok() ? absl::StatusOr<SendResult>(results_.front())
                    : absl::StatusOr<SendResult>(std::move(status));
    runner_->Post([done = std::move(done_), result = std::move(result)] {
      done(result);
    });
    delete this;
  }

 private:
  CallbackRunner* const runner_;
  Producer::SendCallback done_;
};

}  // namespace

// Encodes `message` and picks its queue.
static absl::StatusOr<SendRequest::Item> PrepareItem(
    BrokerCore* core, const ProducerOptions& options,
    std::atomic<uint32_t>& round_robin, const Message& message,
    int64_t born_ms) {
  std::shared_ptr<Topic> topic = core->topics->Find(message.topic);
  if (topic == nullptr) {
    return absl::NotFoundError(absl::StrFormat(
        "topic '%s' does not exist; create it with CreateTopic or 'txmq topic "
        "create'",
        message.topic));
  }
  absl::StatusOr<PendingRecord> record =
      PendingRecord::Encode(message, born_ms, core->options.max_message_bytes);
  if (!record.ok()) return record.status();
  uint32_t queue;
  const bool by_key =
      options.selector == QueueSelector::kKeyHash ||
      (options.selector == QueueSelector::kAuto && !message.key.empty());
  if (by_key) {
    queue = QueueForKey(message.key, topic->queue_count());
  } else {
    queue = round_robin.fetch_add(1, std::memory_order_relaxed) %
            topic->queue_count();
  }
  return SendRequest::Item{std::move(topic), queue, *std::move(record)};
}

static absl::Status Prepare(BrokerCore* core, const ProducerOptions& options,
                            std::atomic<uint32_t>& round_robin,
                            const Message& message, int64_t born_ms,
                            SendRequest* request) {
  absl::StatusOr<SendRequest::Item> item =
      PrepareItem(core, options, round_robin, message, born_ms);
  if (!item.ok()) return item.status();
  request->items_.push_back(*std::move(item));
  return absl::OkStatus();
}

void LocalProducer::SendEach(const std::vector<const Message*>& messages,
                             EachCallback done) {
  auto* request =
      new EachSend(core_->delays.get(), messages.size(), std::move(done));
  const int64_t born_ms = absl::ToUnixMillis(core_->clock->Now());
  for (size_t i = 0; i < messages.size(); ++i) {
    absl::StatusOr<SendRequest::Item> item =
        PrepareItem(core_, options_, round_robin_, *messages[i], born_ms);
    if (item.ok()) {
      request->items_[i] = *std::move(item);
      ++request->queued_;
    } else {
      request->results_[i] = item.status();
    }
  }
  if (request->queued_ == 0) {
    request->Complete(absl::OkStatus());  // nothing to write
    return;
  }
  core_->writer->Submit(request);
}

absl::StatusOr<SendResult> LocalProducer::Send(const Message& message) {
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  BlockingSend request(core_->delays.get());
  if (absl::Status s =
          Prepare(core_, options_, round_robin_, message,
                  absl::ToUnixMillis(core_->clock->Now()), &request);
      !s.ok()) {
    return s;
  }
  core_->writer->Submit(&request);
  if (absl::Status s = request.Wait(); !s.ok()) return s;
  return request.results_.front();
}

void LocalProducer::SendAsync(const Message& message, SendCallback done) {
  auto* request =
      new CallbackSend(core_->delays.get(), &core_->callbacks, std::move(done));
  if (absl::Status s =
          Prepare(core_, options_, round_robin_, message,
                  absl::ToUnixMillis(core_->clock->Now()), request);
      !s.ok()) {
    request->Complete(std::move(s));
    return;
  }
  core_->writer->Submit(request);
}

std::future<absl::StatusOr<SendResult>> LocalProducer::SendAsync(
    const Message& message) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<SendResult>>>();
  std::future<absl::StatusOr<SendResult>> future = promise->get_future();
  SendAsync(message, [promise](absl::StatusOr<SendResult> result) {
    promise->set_value(std::move(result));
  });
  return future;
}

absl::StatusOr<std::vector<SendResult>> LocalProducer::SendBatch(
    const std::vector<Message>& messages) {
  if (messages.empty()) {
    return absl::InvalidArgumentError("SendBatch needs at least one message");
  }
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  BlockingSend request(core_->delays.get());
  const int64_t born_ms = absl::ToUnixMillis(core_->clock->Now());
  for (const Message& message : messages) {
    if (absl::Status s =
            Prepare(core_, options_, round_robin_, message, born_ms, &request);
        !s.ok()) {
      return s;
    }
  }
  core_->writer->Submit(&request);
  if (absl::Status s = request.Wait(); !s.ok()) return s;
  return std::move(request.results_);
}

absl::StatusOr<std::unique_ptr<Transaction>> LocalProducer::Begin(
    const Message& message, const BeginOptions& options) {
  if (options_.group.empty()) {
    return absl::FailedPreconditionError(
        "Begin needs a producer group: create the producer with "
        "ProducerOptions::group, and register the group's checker");
  }
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  BlockingSend prepared(
      core_->delays.get());  // only for Prepare's queue choice and encoding
  if (absl::Status s =
          Prepare(core_, options_, round_robin_, message,
                  absl::ToUnixMillis(core_->clock->Now()), &prepared);
      !s.ok()) {
    return s;
  }
  SendRequest::Item& item = prepared.items_.front();
  item.record.Stamp(MessageId(), item.queue, 0, 0);
  absl::StatusOr<TransactionId> id = BeginThroughWriter(
      core_, std::move(item.record), options_.group, options.first_check);
  if (!id.ok()) return id.status();
  return std::unique_ptr<Transaction>(new TransactionHandle(core_, *id));
}

absl::StatusOr<TransactionResult> SendInTransactionOf(
    Producer& producer, const Message& message,
    absl::FunctionRef<TransactionState(const TransactionId&)> local_transaction,
    const BeginOptions& options) {
  absl::StatusOr<std::unique_ptr<Transaction>> txn =
      producer.Begin(message, options);
  if (!txn.ok()) return txn.status();
  TransactionResult result;
  result.id = (*txn)->id();
  try {
    result.state = local_transaction(result.id);
  } catch (...) {
    result.state = TransactionState::kUnknown;  // the check-back decides
  }
  switch (result.state) {
    case TransactionState::kCommit: {
      absl::StatusOr<SendResult> sent = (*txn)->Commit();
      if (!sent.ok()) return sent.status();
      result.sent = *sent;
      break;
    }
    case TransactionState::kRollback:
      if (absl::Status s = (*txn)->Rollback(); !s.ok()) return s;
      break;
    case TransactionState::kUnknown:
      break;
  }
  return result;
}

absl::StatusOr<TransactionResult> LocalProducer::SendInTransaction(
    const Message& message,
    absl::FunctionRef<TransactionState(const TransactionId&)> local_transaction,
    const BeginOptions& options) {
  return SendInTransactionOf(*this, message, local_transaction, options);
}

}  // namespace txmq
