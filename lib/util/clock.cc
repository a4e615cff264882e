// SystemClock (include/txmq/clock.h).

#include "txmq/clock.h"

namespace txmq {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool RealTime() const override { return true; }
  void OnAdvance(std::function<void()>) override {}
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static auto* clock =
      new std::shared_ptr<Clock>(std::make_shared<RealClock>());
  return *clock;
}

}  // namespace txmq
