// CallbackRunner: one thread that runs asynchronous-send callbacks in the
// order they were posted, so that host code never runs on (or stalls) the
// writer thread.
//
// Thread-safe. Post from any thread; after Stop(), Post runs the callback
// on the caller's thread.

#ifndef TXMQ_LIB_BROKER_CALLBACK_RUNNER_H_
#define TXMQ_LIB_BROKER_CALLBACK_RUNNER_H_

#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace txmq {

class CallbackRunner {
 public:
  CallbackRunner() : thread_([this] { Run(); }) {}
  ~CallbackRunner() { Stop(); }
  CallbackRunner(const CallbackRunner&) = delete;
  CallbackRunner& operator=(const CallbackRunner&) = delete;

  void Post(std::function<void()> callback) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        queue_.push_back(std::move(callback));
        return;
      }
    }
    callback();
  }

  // Runs what was posted, then joins the thread. Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    thread_.join();
  }

 private:
  void Run() {
    std::vector<std::function<void()>> batch;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](CallbackRunner* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return !self->queue_.empty() || self->stopping_;
            },
            this));
        batch.swap(queue_);
        if (batch.empty() && stopping_) return;
      }
      for (auto& callback : batch) callback();
      batch.clear();
    }
  }

  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_CALLBACK_RUNNER_H_
